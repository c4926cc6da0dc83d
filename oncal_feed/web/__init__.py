"""web (being written)."""
