"""Offline SWE-smith-style instance generator (procedural AST mutations, validated by tests).

`synthesize(params, out_path) -> SynthResult` (per environment: `SynthResult.envs`, one
`EnvSynthResult` each) is called by `hrm data materialise` for a `synth:` data source and by
`hrm data synth`. See docs/envs.md.
"""

from hrm.synth.generator import EnvSynthResult, SynthResult, synthesize

__all__ = ["EnvSynthResult", "SynthResult", "synthesize"]
