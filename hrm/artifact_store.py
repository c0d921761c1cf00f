"""MLflow artifact locations relative to the tracking database (`hrm-project:` URIs).

MLflow's sqlite store turns every local artifact location into an absolute `file://` path when
the experiment is created, so a project that is moved, copied or cloned with its `mlflow.db`
and `mlartifacts/` points at the old machine's directories. An experiment created by
`hrm.tracking.configure` on a sqlite database gets the location `hrm-project:/mlartifacts`
instead: the path after the scheme is relative to the directory holding the database.
`project_artifact_repository`, which MLflow loads through the `mlflow.artifact_repository` entry
point in pyproject.toml, opens such a location wherever MLflow needs one: logging, `models:/`
loads, `mlflow models serve`, the `mlflow ui` server (docs/architecture.md, "Artifact locations").

MLflow is imported only inside the functions: MLflow loads its entry points while its artifact
modules are being imported, and a module that imported MLflow at the top would be found
half-initialised if it were imported first.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from hrm.errors import HrmError
from hrm.sqlite_uri import database_path

SCHEME = "hrm-project"
SERVER_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"
"""Where `mlflow server` / `mlflow ui` put their backend store URI for their workers
(`mlflow.server.constants.BACKEND_STORE_URI_ENV_VAR`; a test pins the name)."""


def sqlite_database(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:` tracking URI, resolved against the working directory as
    MLflow reads it; None for any other backend."""
    path = database_path(tracking_uri)
    return None if path is None else path.resolve()


def _has_scheme(location: str) -> bool:
    return len(urllib.parse.urlsplit(location).scheme) > 1  # one letter: a Windows drive


def project_location(location: str, tracking_uri: str) -> str:
    """The artifact location to create an experiment with.

    A relative `location` on a sqlite backend becomes `hrm-project:/<path relative to the
    database's directory>`; anything else (an absolute path, a URI, another backend) is left to
    MLflow as an absolute location, as before.
    """
    if _has_scheme(location):
        return location
    database = sqlite_database(tracking_uri)
    if database is None or Path(location).is_absolute():
        return Path(location).resolve().as_uri()
    relative = Path(os.path.relpath(Path(location).resolve(), database.parent)).as_posix()
    return f"{SCHEME}:/{urllib.parse.quote(relative)}"


def _relative_path(artifact_uri: str) -> str:
    parsed = urllib.parse.urlsplit(artifact_uri)
    if parsed.scheme != SCHEME or parsed.netloc or parsed.query or parsed.fragment:
        raise HrmError(f"{artifact_uri!r}: not an {SCHEME}:/<relative path> artifact location")
    return urllib.parse.unquote(parsed.path).lstrip("/")


def _store_uri(tracking_uri: str | None) -> str:
    """The tracking URI a location is relative to: the one MLflow passed, else the backend of
    the `mlflow server` this runs in, else the one set for this process. Never MLflow's
    default (a `mlflow.db` in whatever directory this happens to run in)."""
    if tracking_uri:
        return tracking_uri
    if os.environ.get(SERVER_STORE_ENV):
        return os.environ[SERVER_STORE_ENV]
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if not is_tracking_uri_set():
        raise HrmError(f"`{SCHEME}:` artifact locations are relative to the project's MLflow "
                       "database, and no tracking URI is set: set MLFLOW_TRACKING_URI to "
                       "sqlite:///<project>/mlflow.db")
    return mlflow.get_tracking_uri()


def resolve(artifact_uri: str, tracking_uri: str | None = None) -> str:
    """The URI an `hrm-project:` location stands for under the tracking URI in use.

    sqlite: `file://<database directory>/<path>`. A tracking server (http/https): its artifact
    proxy, `mlflow-artifacts:/<path less its first segment>`, which holds these files when the
    server runs on the project's database with `--serve-artifacts --artifacts-destination
    <project>/<first segment>` (`mlartifacts`: the server exposes that directory, nothing else
    of the project). Anything else is refused with what to set.
    """
    relative = _relative_path(artifact_uri)
    store = _store_uri(tracking_uri)
    database = sqlite_database(store)
    if database is not None:
        return (database.parent / relative).as_uri()
    if urllib.parse.urlsplit(store).scheme in ("http", "https"):
        parts = relative.split("/")
        if ".." in parts or len(parts) < 2:
            raise HrmError(f"{artifact_uri}: a tracking server serves artifacts from one directory "
                           "of the project; this location is not inside one")
        return f"mlflow-artifacts:/{urllib.parse.quote('/'.join(parts[1:]))}"
    raise HrmError(
        f"{artifact_uri}: `{SCHEME}:` artifact locations are relative to a sqlite tracking "
        f"database (or its `mlflow server`), but the tracking URI is {store!r}; point "
        "MLFLOW_TRACKING_URI at the project's sqlite:///…/mlflow.db")


def project_artifact_repository(artifact_uri: str, tracking_uri: str | None = None,
                                registry_uri: str | None = None):
    """The MLflow artifact repository of an `hrm-project:` location (the entry point's target):
    MLflow's own local or proxied repository for the URI `resolve` gives."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(resolve(artifact_uri, tracking_uri), tracking_uri=tracking_uri,
                                   registry_uri=registry_uri)
