"""Data plane: the real formats: schemas, readers, validation and ingest."""
