"""End to end: the KFP pipeline under kfp.local on the tiny profile, on the real sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


@pytest.mark.slow
def test_run_local_end_to_end(sample_path: Path, tiny_params_file: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.local import RESULT_FILE, run_local

    raw = yaml.safe_load(tiny_params_file.read_text())
    # Tests never download: no environment build (the tests tier needs the tenacity sdist).
    raw["eval"]["run_tests"] = False
    tiny_params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)

    result = run_local(sample_path, tmp_path / "run", tiny_params_file, profile="tiny")

    gate_files = list(Path(result.pipeline_root).rglob("gate.json"))
    assert len(gate_files) == 1, gate_files
    verdict = json.loads(gate_files[0].read_text())["verdict"]
    # The branch that ran is the one the gate decided.
    assert result.branch == {"PROMOTE": "promote", "FLAG": "flag"}[verdict]
    ran = {p.name for p in Path(result.pipeline_root).glob("*/*") if p.is_dir()}
    assert ("promote" in ran) == (verdict == "PROMOTE")
    assert ("flag" in ran) == (verdict == "FLAG")
    summary = json.loads((tmp_path / "run" / RESULT_FILE).read_text())
    assert summary["branch"] == result.branch
