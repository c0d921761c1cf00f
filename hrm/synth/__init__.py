"""Offline SWE-smith-style instance generator (procedural AST mutations, validated by tests).

`synthesize(params, out_path) -> SynthResult` is called by `hrm data materialise` for a
`synth:` data source and by `hrm data synth`. See docs/envs.md.
"""

from hrm.synth.generator import SynthResult, synthesize

__all__ = ["SynthResult", "synthesize"]
