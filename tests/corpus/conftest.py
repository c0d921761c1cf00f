"""Fixtures of the corpus tests: the tiny profile's corpus (tabulate and sortedcontainers, from
the project's sdist cache), built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm.config import CorpusConfig, load_params


@pytest.fixture(scope="session")
def corpus_cfg(repo_root: Path) -> CorpusConfig:
    """The tiny profile's corpus section, reading sdists from the project cache (a package
    missing there is downloaded once from PyPI)."""
    cfg = load_params(repo_root / "params.yaml", "tiny").corpus
    assert [p.package for p in cfg.packages] == ["tabulate==0.9.0", "sortedcontainers==2.4.0"]
    return cfg.model_copy(update={"cache_dir": str(repo_root / ".cache" / "hrm-corpus"),
                                  "workers": 1})


@pytest.fixture(scope="session")
def built_corpus(corpus_cfg, tmp_path_factory):
    """(output directory, summary) of one build."""
    from hrm.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    return out, build_corpus(corpus_cfg, out, progress=False)
