"""Convergence gate: decide PROMOTE/FLAG from eval metrics, report convergence, act on the registry.

Modules, one job each:
- `inputs`: read `metrics.json` per split and the per-phase `history.csv` files.
- `decide`: evaluate `gate.criteria` and write `gate.json`.
- `primary`: the repair rule (the model shown above every baseline) and its re-derivation.
- `projection`: fit learning curves and project them to `gate.target_epoch` with a bootstrap.
- `rules`: early-warning rules and the recommendations they trigger.
- `plots`, `report`: the PNGs and `report.md`.
- `registry`: register, promote and flag model versions in the MLflow Model Registry.
- `step`: the whole `hrm gate` step (decide + report + registry + tracking).
"""
