"""Ingestion, validation and the instance schema of SWE-smith task instances."""
