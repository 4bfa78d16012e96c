"""Klubpost: newsletters and campaigns for public libraries' member clubs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from klubpost.config import load_config
from klubpost.db import MAX_ID

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")


class IdConverter(IntegerConverter):
    """`<int:...>` in a route matches only numbers an id can be: a larger one is
    a 404, never a database error."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the application: defaults, then the environment, then `config`."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(load_config(app.instance_path, config))
    app.url_map.converters["int"] = IdConverter

    from flask_migrate import Migrate

    from klubpost import cli, errors, i18n
    from klubpost.auth import login_manager
    from klubpost.db import db
    from klubpost.security import csrf

    db.init_app(app)
    Migrate(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    i18n.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    _register_blueprints(app)
    from tracking import public as tracking_public

    # Its fast WSGI layer sits inside ProxyFix, so it sees the client's address.
    tracking_public.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        # Behind a reverse proxy: take the client address from X-Forwarded-For.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


def _register_blueprints(app: Flask) -> None:
    from accounts.views import bp as accounts_bp
    from campaigns.api import bp as campaigns_api_bp
    from campaigns.public import bp as campaigns_public_bp
    from campaigns.views import bp as campaigns_bp
    from campaigns.webhooks import bp as bounce_api_bp
    from klubpost.outbox import bp as outbox_bp
    from klubpost.schema import require_current_schema
    from subscribers.api import bp as subscribers_api_bp
    from subscribers.import_views import bp as imports_bp
    from subscribers.public import bp as public_bp
    from subscribers.views import bp as subscribers_bp
    from tracking import models as _tracking_models  # noqa: F401
    from tracking.api import bp as stats_api_bp
    from tracking.views import bp as stats_bp

    app.before_request(_start_clean)
    app.before_request(require_current_schema)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(subscribers_bp)
    app.register_blueprint(imports_bp)
    app.register_blueprint(public_bp)
    app.register_blueprint(subscribers_api_bp)
    app.register_blueprint(outbox_bp)
    app.register_blueprint(campaigns_bp)
    app.register_blueprint(campaigns_public_bp)
    app.register_blueprint(campaigns_api_bp)
    app.register_blueprint(stats_bp)
    app.register_blueprint(stats_api_bp)
    app.register_blueprint(bounce_api_bp)


def _start_clean() -> None:
    """Let nothing of an earlier request in the same app context leak into this one.

    Each request normally gets a fresh app context; tests and the CLI may share
    one, and then the logged-in user, API user or language must not carry over.
    """
    from flask import g
    from flask_babel import refresh

    for name in ("_login_user", "api_user", "locale", "csrf_token"):
        g.pop(name, None)
    refresh()
