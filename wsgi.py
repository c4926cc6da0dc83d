"""WSGI entry point for production: `gunicorn wsgi:app` (settings in gunicorn.conf.py)."""

from oncal_feed import create_app

app = create_app()
