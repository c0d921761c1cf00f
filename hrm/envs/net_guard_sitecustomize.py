"""Installed by hrm's sandbox as `sitecustomize.py` where no network namespace is available:
refuse inet sockets with the "Network is unreachable" an empty network namespace gives.

Copied into the run's HOME (`hrm.envs.sandbox`), never imported by `hrm`: an in-process guard
only (C extensions or subprocesses can bypass it), which the run's `isolation` label says.
"""
import socket as _socket

_orig_connect = _socket.socket.connect
_orig_connect_ex = _socket.socket.connect_ex


def _guard(self, address, *rest):
    if self.family in (_socket.AF_INET, _socket.AF_INET6):
        raise OSError(101, "Network is unreachable (network disabled by the hrm sandbox)")
    return _orig_connect(self, address, *rest)


def _guard_ex(self, address, *rest):
    if self.family in (_socket.AF_INET, _socket.AF_INET6):
        return 101
    return _orig_connect_ex(self, address, *rest)


_socket.socket.connect = _guard
_socket.socket.connect_ex = _guard_ex
