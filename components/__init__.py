"""KFP v2 lightweight components: one per pipeline step, each a thin shell over an `hrm` step.

`image.py` names the container images, `runtime.py` holds the glue every component body runs
inside the image (params from the pipeline parameter, metrics logging, input layout), and
`steps.py` defines the `@dsl.component`s themselves.
"""
