"""Build every repository environment of a params file into the image's environment cache, and
fetch every corpus package (of every profile) into its corpus cache.

Run by docker/Dockerfile.cpu at image build time (`python -m components.bake_envs
/opt/hrm/params.yaml`), with $HRM_ENVS_CACHE_DIR pointing at a directory of the image: the
evaluation pods then find the environments built (same interpreter, same spec: same
fingerprint) and never pip-download them at run time. `components.runtime.task_params` points
`envs.cache_dir` at the same variable inside the pods.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from components.runtime import CORPUS_CACHE_ENV, ENVS_CACHE_ENV
from hrm.config import ConfigError, load_params


def bake(params_path: str | Path, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Build (or reuse) each `envs.repos` entry that can be built here; repo id -> its root.

    `cache_dir` defaults to $HRM_ENVS_CACHE_DIR. Entries with the `image` provider run on
    Kubernetes only and are skipped. A build failure raises (the image build must fail).
    """
    from hrm.envs import get_environment

    cache = cache_dir or os.environ.get(ENVS_CACHE_ENV)
    if not cache:
        raise ConfigError(f"no cache directory: pass one or set ${ENVS_CACHE_ENV}")
    params = load_params(params_path)
    envs = params.envs.model_copy(update={"cache_dir": str(cache)})
    built = {}
    for repo_id, spec in envs.repos.items():
        if spec.provider == "image":
            continue
        built[repo_id] = get_environment(repo_id, envs).root
    return built


def bake_corpus(params_path: str | Path, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Fetch (or reuse) the sdist of every `corpus.packages` entry of every profile; requirement
    -> its unpacked tree. `cache_dir` defaults to $HRM_CORPUS_CACHE_DIR."""
    import yaml

    from hrm.config import parse_params
    from hrm.corpus.fetch import package_tree

    cache = cache_dir or os.environ.get(CORPUS_CACHE_ENV)
    if not cache:
        raise ConfigError(f"no corpus cache directory: pass one or set ${CORPUS_CACHE_ENV}")
    raw = yaml.safe_load(Path(params_path).read_text(encoding="utf-8"))
    packages = {pkg.package for profile in (raw.get("profiles") or {"": None})
                for pkg in parse_params(raw, profile or None, source=str(params_path)).corpus.packages}
    return {pkg: package_tree(pkg, cache) for pkg in sorted(packages)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", type=Path, help="params.yaml whose envs.repos to build")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"environment cache (default: ${ENVS_CACHE_ENV})")
    args = parser.parse_args(argv)
    for repo_id, root in bake(args.params, args.cache_dir).items():
        print(f"bake_envs: {repo_id} ready at {root}")
    if os.environ.get(CORPUS_CACHE_ENV):
        for package, tree in bake_corpus(args.params).items():
            print(f"bake_envs: corpus package {package} ready at {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
