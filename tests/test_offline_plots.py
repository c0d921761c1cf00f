"""`hrm plots offline` writes DVC a page template with Vega inlined and names it in the
repository's machine-local config, without replacing a template the repository already names.
(tests/test_dvc_pipeline.py renders a real `dvc plots show` page with it.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hrm.offline_plots import TEMPLATE_PATH, configured_template, install_template

DVC = str(Path(sys.executable).with_name("dvc"))


@pytest.fixture(autouse=True)
def _only_the_repositorys_config(tmp_path: Path, monkeypatch):
    """No global or system DVC config of this machine takes part."""
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tmp_path / "dvc-global"))
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(tmp_path / "dvc-system"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def _dvc_repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([DVC, "init", "-q"], cwd=root, check=True)
    return root


def test_install_names_the_template_locally_and_keeps_a_users_own(tmp_path: Path):
    repo = _dvc_repo(tmp_path / "repo")
    path, kept = install_template(repo, DVC)
    assert kept is None and path == repo / TEMPLATE_PATH
    page = path.read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page  # no CDN tags inserted
    assert "window.vegaEmbed=" in page.replace(" ", "") and "<script src" not in page
    assert configured_template(repo) == f"../{TEMPLATE_PATH.as_posix()}"
    assert "html_template" in (repo / ".dvc" / "config.local").read_text()
    assert "html_template" not in (repo / ".dvc" / "config").read_text()  # nothing committed
    assert install_template(repo, DVC) == (path, None)  # again: rewritten, same config
    # our own template named another way (an absolute path) is still ours: rewritten
    subprocess.run([DVC, "config", "--local", "plots.html_template", str(path)], cwd=repo, check=True)
    path.unlink()
    assert install_template(repo, DVC) == (path, None) and path.is_file()

    mine = _dvc_repo(tmp_path / "mine")
    subprocess.run([DVC, "config", "plots.html_template", "my-page.html"], cwd=mine, check=True)
    assert install_template(mine, DVC)[1] == "my-page.html"
    assert not (mine / TEMPLATE_PATH).exists() and not (mine / ".dvc" / "config.local").exists()


def test_a_directory_without_dvc_is_refused(tmp_path: Path):
    from hrm.errors import HrmError

    with pytest.raises(HrmError, match="not a DVC repository"):
        install_template(tmp_path, DVC)
