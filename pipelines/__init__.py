"""The Kubeflow Pipelines v2 DAG over the components in `components/`."""
