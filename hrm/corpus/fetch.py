"""Pinned package sources for the corpus: `pip download` of the sdist, unpacked once, cached.

Cache layout (`corpus.cache_dir`): `<name>-<version>/tree/` (the unpacked sdist) and
`<name>-<version>/marker.json` written last (a missing marker means a half-written copy: it is
fetched again). Only PyPI is contacted, and only when the cache lacks the package.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hrm.errors import InputError

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")

_SKIP_DIRS = {"tests", "test", "testing", "docs", "doc", "examples", "example", "benchmarks",
              "benchmark", "bench", "scripts", "tools", "build", "dist", "tutorial", "demo"}
_SKIP_FILES = {"setup.py", "conftest.py", "noxfile.py", "fabfile.py", "tasks.py"}


def parse_pin(requirement: str) -> tuple[str, str]:
    """(name, version) of `name==version`; anything else is refused (the corpus is pinned)."""
    m = _PIN.match(requirement.strip())
    if m is None:
        raise InputError(f"corpus.packages: {requirement!r} is not pinned as NAME==VERSION")
    return m.group(1), m.group(2)


def package_tree(requirement: str, cache_dir: str | Path) -> Path:
    """The unpacked sdist of a pinned requirement, downloaded into the cache on first use."""
    from hrm.envs.errors import EnvironmentUnavailable
    from hrm.envs.providers import _unpack

    name, version = parse_pin(requirement)
    root = Path(cache_dir).resolve() / f"{name.lower()}-{version}"
    marker = root / "marker.json"
    if marker.is_file():
        return root / "tree"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory() as dl:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                 ":all:", "--disable-pip-version-check", requirement, "-d", dl],
                capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise InputError(f"corpus.packages: pip download {requirement} failed: "
                                 f"{(proc.stderr or proc.stdout).strip()[-800:]}")
            archives = sorted(Path(dl).iterdir())
            if len(archives) != 1:
                raise InputError(f"corpus.packages: pip download {requirement}: expected one "
                                 f"sdist, got {[a.name for a in archives]}")
            try:
                _unpack(archives[0], root / "tree", requirement)
            except EnvironmentUnavailable as err:
                raise InputError(f"corpus.packages: {err}") from None
            sha = _sha256(archives[0])
        marker.write_text(json.dumps({"requirement": requirement, "archive": archives[0].name,
                                      "sha256": sha}, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root / "tree"


def package_marker(tree: Path) -> dict:
    return json.loads((tree.parent / "marker.json").read_text())


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_files(tree: Path, source_dirs: list[str] | None = None) -> list[Path]:
    """The package's own modules, sorted: under `source_dirs` when given, else every `.py` file
    outside test, docs, example and tooling directories (and not a test or setup file)."""
    roots = [tree / d for d in source_dirs] if source_dirs else [tree]
    out: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise InputError(f"corpus: source dir {root.relative_to(tree)} not in the sdist",
                             path=str(tree))
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(tree)
            if any(part.lower() in _SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
                continue
            name = rel.name
            if name in _SKIP_FILES or name.startswith("test_") or name.endswith("_test.py"):
                continue
            out.append(path)
    return out
