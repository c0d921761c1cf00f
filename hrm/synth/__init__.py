"""Offline SWE-smith-style instance generator (procedural AST mutations, validated by tests).

`synthesize(params, out_path) -> SynthResult` (per environment: `SynthResult.envs`, one
`EnvSynthResult` each) is called by `hrm data materialise` for a `synth:` data source and by
`hrm data synth`. See docs/envs.md.

The generator (and with it the environments and the sandbox) is imported on first use of these
names, not with the package: the corpus and the rewrites need only `hrm.synth.mutations`, and
their DVC stages depend on what they import (tests/test_dvc_pipeline.py).
"""

__all__ = ["EnvSynthResult", "SynthResult", "synthesize"]


def __getattr__(name: str):
    if name in __all__:
        from hrm.synth import generator

        return getattr(generator, name)
    raise AttributeError(f"module 'hrm.synth' has no attribute {name!r}")
