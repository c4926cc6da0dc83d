"""Signed per-user ICS feeds: tokens, assembly with caches, and the HTTP view."""
