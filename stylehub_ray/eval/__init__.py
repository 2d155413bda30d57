"""Evaluation: batch recommendation, baselines, the evaluation stages and similar items."""
