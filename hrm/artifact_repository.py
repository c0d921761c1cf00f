"""The MLflow artifact repository of `hrm-project:` URIs (hrm/artifact_store.py has the rules).

MLflow imports this module through the `mlflow.artifact_repository` entry point in
pyproject.toml; it is not meant to be imported first by anything else (importing MLflow's
artifact modules registers the entry points, which would find this module half-initialised).
"""

from __future__ import annotations

from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

from hrm.artifact_store import resolve


class ProjectArtifactRepository(LocalArtifactRepository):
    """A local artifact repository whose root is given relative to the tracking database."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None,
                 registry_uri: str | None = None) -> None:
        super().__init__(resolve(artifact_uri, tracking_uri), tracking_uri, registry_uri)
