"""Evaluation: code metrics, execution-verified fixes, SWE-search, reverse-learning ablation."""
