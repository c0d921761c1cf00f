"""MLflow artifact locations relative to the tracking database (`hrm-project:` URIs).

MLflow's sqlite store turns every local artifact location into an absolute `file://` path when
the experiment is created, so a project that is moved, copied or cloned with its `mlflow.db`
and `mlartifacts/` points at the old machine's directories. An experiment created by
`hrm.tracking.configure` on a sqlite database gets the location `hrm-project:/mlartifacts`
instead: the path after the scheme is relative to the directory holding the database, and this
artifact repository (`hrm.artifact_repository`, registered with MLflow through the
`mlflow.artifact_repository` entry point in pyproject.toml) resolves it there whenever MLflow opens one: logging, `models:/` loads,
`mlflow models serve`, the `mlflow ui` server. docs/tracking.md has the why.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from hrm.errors import HrmError

SCHEME = "hrm-project"
SERVER_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"
"""Where `mlflow server` / `mlflow ui` put their backend store URI for their workers."""


def sqlite_database(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:` tracking URI (relative ones against the working
    directory, as MLflow reads them); None for any other backend."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(urllib.parse.unquote(tracking_uri[len("sqlite:///"):].split("?", 1)[0])).resolve()


def project_location(location: str, tracking_uri: str) -> str:
    """The artifact location to create an experiment with.

    A relative `location` on a sqlite backend becomes `hrm-project:/<path relative to the
    database's directory>`; anything else (an absolute path, a URI, another backend) is left to
    MLflow as an absolute location, as before.
    """
    database = sqlite_database(tracking_uri)
    if database is None or "://" in location or Path(location).is_absolute():
        return location if "://" in location else Path(location).resolve().as_uri()
    relative = os.path.relpath(Path(location).resolve(), database.parent)
    return f"{SCHEME}:/{Path(relative).as_posix()}"


def resolve(artifact_uri: str, tracking_uri: str | None = None) -> str:
    """The `file://` URI an `hrm-project:` URI stands for under the current tracking database."""
    import mlflow

    store = tracking_uri or os.environ.get(SERVER_STORE_ENV) or mlflow.get_tracking_uri()
    database = sqlite_database(store)
    if database is None:
        raise HrmError(
            f"{artifact_uri}: `{SCHEME}:` artifact locations are relative to a sqlite tracking "
            f"database, but the tracking URI is {store!r}; point MLFLOW_TRACKING_URI at the "
            "project's sqlite:///…/mlflow.db")
    relative = urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path).lstrip("/")
    return (database.parent / relative).as_uri()
