"""The channel a sandboxed pytest run reports through, out of the code under test's reach.

A run's outcomes come from the report plugin (`pytest_report_plugin.py`) over two pipes this
module opens: the plugin reads a one-run secret key from one and closes it before any test
module is imported, and writes HMAC-chained JSON lines to the other, which a host thread
drains while the run goes on. No report file exists that the run could rewrite, and
`hrm.envs.results.verify_reports` refuses lines without a valid chain or that do not form one
finished pytest session (docs/envs.md "Test results the code under test cannot forge").
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from hrm.envs.results import ReportRefused, verify_reports

MAX_REPORT_BYTES = 64 * 1024 * 1024
"""A report larger than this is refused (the plugin writes ~200 bytes per test phase)."""

SHADOWED_NAMES = frozenset({
    "sitecustomize", "usercustomize", "pytest", "_pytest", "pluggy", "hrm_pytest_report",
    "hmac", "hashlib", "json", "os", "sys", "threading",
})
"""Modules Python or pytest import before the report plugin has read its key (the tree comes
first on sys.path): a tree that defines one of them could read the key first."""


def shadowing_modules(tree: Path) -> list[str]:
    """Top-level modules or packages of `tree` that would replace one of `SHADOWED_NAMES`."""
    found = set()
    for entry in os.scandir(tree):
        name = entry.name.split(".", 1)[0]
        if name not in SHADOWED_NAMES:
            continue
        module = entry.is_file() and (entry.name == f"{name}.py" or entry.name.endswith(".so"))
        package = (entry.is_dir() and entry.name == name
                   and (Path(entry.path) / "__init__.py").exists())
        if module or package:
            found.add(name)
    return sorted(found)


class _Drain(threading.Thread):
    """Read a pipe to EOF, keeping at most `cap` bytes (the rest is counted)."""

    def __init__(self, fd: int, cap: int):
        super().__init__(daemon=True)
        self.fd, self.cap = fd, cap
        self.data = bytearray()
        self.total = 0

    def run(self) -> None:
        while chunk := os.read(self.fd, 65536):
            self.total += len(chunk)
            if len(self.data) < self.cap:
                self.data += chunk[: self.cap - len(self.data)]


class ReportChannel:
    """Open with `with ReportChannel() as ch:`; give the child `ch.plugin_args` and
    `ch.pass_fds`; after the run, `ch.records(exit_code)` (raises ReportRefused)."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)
        key_read, key_write = os.pipe()
        os.write(key_write, self.key)  # 32 bytes: far below a pipe's buffer
        os.close(key_write)
        self._key_read = key_read
        self._report_read, self._report_write = os.pipe()
        self._drain = _Drain(self._report_read, MAX_REPORT_BYTES)
        self._drain.start()
        self._closed = False

    @property
    def pass_fds(self) -> tuple[int, int]:
        return (self._report_write, self._key_read)

    @property
    def plugin_args(self) -> list[str]:
        return [f"--hrm-report-fd={self._report_write}", f"--hrm-key-fd={self._key_read}"]

    def _close_child_ends(self) -> None:
        if not self._closed:
            os.close(self._report_write)
            os.close(self._key_read)
            self._closed = True

    def records(self, exit_code: int | None) -> list[dict]:
        """The verified records of the finished run (`exit_code` None: it was killed)."""
        self._close_child_ends()
        self._drain.join(timeout=10)
        if self._drain.is_alive():
            raise ReportRefused("the report pipe stayed open after the run ended")
        if self._drain.total > MAX_REPORT_BYTES:
            raise ReportRefused(f"report of {self._drain.total} bytes, over the "
                                f"{MAX_REPORT_BYTES}-byte limit")
        return verify_reports(bytes(self._drain.data), self.key, exit_code=exit_code)

    def __enter__(self) -> ReportChannel:
        return self

    def __exit__(self, *exc) -> None:
        self._close_child_ends()
        self._drain.join(timeout=10)
        if not self._drain.is_alive():
            os.close(self._report_read)
