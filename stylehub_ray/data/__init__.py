"""Data plane: schemas, readers, generators, validation and ingest."""
