"""connections (being written)."""
