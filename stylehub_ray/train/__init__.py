"""Ray Train loops and trainer builders, one file per model."""
