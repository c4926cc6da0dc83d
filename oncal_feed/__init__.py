"""oncal-feed: on-call shifts in the calendars people already use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app: settings, database, blueprints and error handlers.

    `config` overrides settings from the environment (tests pass a dict here).
    """
    from oncal_feed.admin.views import admin_blueprint
    from oncal_feed.api import admin as _api_admin  # noqa: F401  (adds its routes first)
    from oncal_feed.api import api_blueprint
    from oncal_feed.api import sources as _api_sources  # noqa: F401  (adds its routes first)
    from oncal_feed.config import instance_path_setting, load_config
    from oncal_feed.connections.views import connections_blueprint
    from oncal_feed.db import Database
    from oncal_feed.errors_http import register_error_handlers
    from oncal_feed.feeds.views import init_feeds
    from oncal_feed.logs import configure_logging
    from oncal_feed.ops import ops_blueprint
    from oncal_feed.sources.tasks import init_app as init_sources
    from oncal_feed.sso import init_sso
    from oncal_feed.sync.tasks import init_app as init_sync
    from oncal_feed.web import init_web

    app = Flask(__name__, instance_relative_config=True)
    instance_path = Path(
        (config or {}).get("INSTANCE_PATH") or instance_path_setting() or app.instance_path
    )
    app.instance_path = str(instance_path)
    app.config.update(load_config(instance_path, config))
    configure_logging(app)
    if app.config["TRUSTED_PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )

    Database(app.config["DATABASE_URL"]).init_app(app)
    register_error_handlers(app)
    app.register_blueprint(api_blueprint)
    app.register_blueprint(ops_blueprint)
    app.register_blueprint(connections_blueprint)
    app.register_blueprint(admin_blueprint)
    init_sso(app)
    # After the other blueprints: CSRF protection exempts some of them by name.
    init_web(app)
    init_sync(app)
    init_sources(app)
    # Last: the feed endpoint wraps everything else, ProxyFix included (see feeds.views).
    init_feeds(app)
    return app
