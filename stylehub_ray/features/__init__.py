"""Features, temporal split, negative sampling and fitted preprocessing (two-tower paper)."""
