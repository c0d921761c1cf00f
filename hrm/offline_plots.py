"""`dvc plots show` that renders offline: DVC's HTML template with the Vega libraries inlined.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so without network it is a
blank page. DVC takes its own template (`plots.html_template`, relative to `.dvc/`); this writes
one whose `<script>` holds the libraries themselves (vl-convert's bundle of vega-embed, vega-lite
and vega, ~0.9 MB) and points the repository's machine-local DVC config (`.dvc/config.local`,
never committed) at it. The page keeps DVC's `{plot_divs}` placeholder and drops `{scripts}`, so
DVC inserts its plots and none of its CDN tags.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hrm.errors import HrmError

VEGA_LITE_VERSION = "5.20"
"""The Vega-Lite major DVC writes its specs for (its templates declare the v5 schema)."""

TEMPLATE_PATH = Path(".cache/hrm-plots/dvc-offline.html")
"""Where the template is written, relative to the repository root (git-ignored)."""

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (offline)</title>
    <script type="text/javascript">
{bundle}
    </script>
    <style>
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template_html() -> str:
    """The template: DVC's layout with the Vega libraries in the page."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script", "<!--"):
        if placeholder in bundle.lower():  # DVC fills placeholders by plain text replacement
            raise HrmError(f"the Vega bundle contains {placeholder!r}: it cannot be inlined as is")
    head, tail = PAGE.split("{bundle}")
    return head + bundle + tail


def configured_template(repo: Path) -> str | None:
    """`plots.html_template` as DVC reads it for `repo` (every config level merged)."""
    from dvc.config import Config, ConfigError

    try:
        return Config(dvc_dir=str(repo / ".dvc")).get("plots", {}).get("html_template")
    except ConfigError as err:
        raise HrmError(f"{repo / '.dvc'}: DVC cannot read its config: {err}") from None


def _is_ours(value: str, repo: Path) -> bool:
    """`value` (as DVC reads it: relative to .dvc/) names this module's template."""
    return (repo / ".dvc" / value).resolve() == (repo / TEMPLATE_PATH).resolve()


def install_template(repo: Path, dvc: str) -> tuple[Path, str | None]:
    """Write the template under `repo` and set `plots.html_template` in its `.dvc/config.local`
    (with `dvc config --local`). Returns the template's path and, when the repository already
    names a template of its own, that one: it is kept, not replaced."""
    repo = repo.resolve()
    if not (repo / ".dvc").is_dir():
        raise HrmError(f"{repo}: not a DVC repository (no .dvc directory)")
    relative = (Path("..") / TEMPLATE_PATH).as_posix()  # DVC reads it relative to .dvc/
    current = configured_template(repo)
    if current is not None and not _is_ours(current, repo):
        return repo / TEMPLATE_PATH, current
    path = repo / TEMPLATE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(template_html(), encoding="utf-8")
    partial.replace(path)
    proc = subprocess.run([dvc, "config", "--local", "plots.html_template", relative],
                          cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HrmError(f"`dvc config --local plots.html_template` failed in {repo}: "
                       f"{proc.stderr.strip() or proc.stdout.strip()}")
    return path, None
