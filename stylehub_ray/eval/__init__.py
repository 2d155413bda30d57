"""Evaluation: metrics, ..."""
