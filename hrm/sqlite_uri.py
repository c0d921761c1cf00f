"""The database file a `sqlite:` tracking URI names (`sqlite:///rel.db`, `sqlite:////abs.db`,
`sqlite+driver:` too, a `?query` ignored), for the steps that act on the file beside MLflow:
the artifact locations relative to it, the promotion lock next to it, `hrm repair` finding a
project's registry."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from hrm.errors import HrmError


def database_path(tracking_uri: str) -> Path | None:
    """The database path as the URI writes it (relative ones are relative to the working
    directory, as MLflow reads them); None for any other backend; HrmError for a sqlite URI of
    another form."""
    parsed = urllib.parse.urlsplit(tracking_uri)
    if parsed.scheme != "sqlite" and not parsed.scheme.startswith("sqlite+"):
        return None
    if parsed.netloc or not parsed.path.startswith("/") or parsed.path == "/":
        raise HrmError(f"{tracking_uri!r}: a sqlite tracking URI is sqlite:///<relative path> or "
                       "sqlite:////<absolute path>")
    return Path(urllib.parse.unquote(parsed.path[1:]))
