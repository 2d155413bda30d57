"""Torch modules and losses only (no Ray inside), one model per file."""
