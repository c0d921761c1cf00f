"""KFP v2 lightweight components: one per pipeline step, each a thin shell over an `hrm` step.

`image.py` names the container images, `runtime.py` holds the glue every component body runs
inside the image (params from the pipeline parameters, metrics logging, input layout),
`steps.py` defines the `@dsl.component`s themselves, and `bake_envs.py` builds the test
environments into the CPU image at image build time.
"""
