"""Errors a user can act on. Their messages name the file, line or field at fault."""

from __future__ import annotations


class HrmError(Exception):
    """Base of the errors the CLI reports as a one-line message and exit code 2."""


class InputError(HrmError):
    """Bad input data: the message names the file and, where known, the line or field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = path or ""
        if path and line is not None:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.path = path
        self.line = line


class StepFailed(HrmError):
    """A step ran and its result says stop (e.g. too many invalid rows); outputs were written."""
