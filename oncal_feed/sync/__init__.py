"""sync (being written)."""
