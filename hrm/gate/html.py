"""`report.html`: the Markdown report as one self-contained HTML file.

The Kubeflow UI shows an HTML artifact but cannot follow the Markdown's relative `plots/*.png`
links, and an offline browser cannot fetch CDN assets: so the CSS is inline and every image
is embedded as a base64 data URI.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

HTML_FILE = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #1f2328; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code { background: #f6f8fa; padding: 0 0.2rem; border-radius: 3px; }
img { max-width: 100%; border: 1px solid #d0d7de; }
"""

_IMG_SRC = re.compile(r'<img src="([^"]+)"')


def _inline_images(body: str, base_dir: Path) -> str:
    """Replace each local `<img src>` with a data URI; a missing image is an error."""

    def embed(match: re.Match[str]) -> str:
        src = html.unescape(match.group(1))
        if src.startswith("data:"):
            return match.group(0)
        path = (base_dir / src).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"report image not found: {path}")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}"'

    return _IMG_SRC.sub(embed, body)


def render_html(markdown_text: str, base_dir: str | Path, title: str = "Convergence gate report") -> str:
    """The report as a standalone HTML page; images under `base_dir` are embedded."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    body = _inline_images(body, Path(base_dir))
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body>\n{body}</body></html>\n")


def write_html(report_md: str | Path) -> Path:
    """Write `report.html` next to `report_md`."""
    report_md = Path(report_md)
    out = report_md.with_name(HTML_FILE)
    out.write_text(render_html(report_md.read_text(encoding="utf-8"), report_md.parent), encoding="utf-8")
    return out
