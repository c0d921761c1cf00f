"""Errors raised by repository environments; both are user-facing (`HrmError`)."""

from __future__ import annotations

from hrm.errors import HrmError


class EnvironmentUnavailable(HrmError):
    """No environment can be provided for a repo id here; `reason` says why."""

    def __init__(self, repo_id: str, reason: str):
        super().__init__(f"environment for {repo_id!r} unavailable: {reason}")
        self.repo_id = repo_id
        self.reason = reason


class PatchError(HrmError):
    """`git apply` refused a patch; the message is git's own."""

    def __init__(self, message: str, *, reverse: bool = False):
        direction = "reverse-apply" if reverse else "apply"
        super().__init__(f"patch does not {direction}: {message.strip()}")
        self.git_message = message.strip()
        self.reverse = reverse
