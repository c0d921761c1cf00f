"""The training corpus: mutations of the functions of pinned pure-Python packages.

No tests run: a row is a function as it reads with a procedural bug and as it read before. It is
its own dataset (`hrm corpus build`, a DVC stage with its own checks), used by the foundation
phase only and never mixed into val or test (see docs/data.md).
"""
