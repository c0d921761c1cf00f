"""Fixtures of the data tests: the real sample's lines, read at test time (never copied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrm.config import DataConfig


@pytest.fixture(scope="session")
def sample_lines(sample_path: Path) -> list[bytes]:
    """The sample's JSONL lines as bytes, without newlines."""
    return sample_path.read_bytes().rstrip(b"\n").split(b"\n")


@pytest.fixture(scope="session")
def sample_rows(sample_lines: list[bytes]) -> list[dict]:
    return [json.loads(line) for line in sample_lines]


@pytest.fixture()
def data_cfg() -> DataConfig:
    return DataConfig()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
