"""The one place the project's container images are named.

Components run in these images on the cluster; nothing is pip-installed at run time, so the
image must carry the `hrm` package with every dependency (see docker/). Override with the
environment variables at *compile* time, e.g. `HRM_IMAGE=registry.example/hrm:1.2 hrm pipeline
compile`; the name is baked into the compiled pipeline YAML.
"""

from __future__ import annotations

import os
from importlib import metadata

IMAGE_ENV = "HRM_IMAGE"
GPU_IMAGE_ENV = "HRM_GPU_IMAGE"
IMAGE_REPOSITORY = "ghcr.io/hrm-project/hrm"


def _version() -> str:
    """The installed `hrm` version: images are tagged with the release they were built from."""
    try:
        return metadata.version("hrm")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "latest"


VERSION = _version()

# CPU image (docker/Dockerfile.cpu): every step except training.
BASE_IMAGE = os.environ.get(IMAGE_ENV) or f"{IMAGE_REPOSITORY}:{VERSION}"

# CUDA image (docker/Dockerfile.gpu, with flash-attn): the training phases.
GPU_IMAGE = os.environ.get(GPU_IMAGE_ENV) or f"{IMAGE_REPOSITORY}:{VERSION}-gpu"
