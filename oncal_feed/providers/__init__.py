"""providers (being written)."""
