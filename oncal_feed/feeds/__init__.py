"""Signed per-user ICS feeds: tokens, assembly with caches, and the HTTP view.

Owns: feed tokens (`tokens`), assembly and its caches (`service`, `cache`, `user_cache`),
the WSGI endpoint (`views`) and the `feed-url` / `rotate-feed` commands (`cli`).

May import: the core, `rendering`, `cli.helpers`; the view also `web.security`.
"""
