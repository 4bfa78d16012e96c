"""Configuration: defaults, then environment variables, then an explicit mapping."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "ENV": "development",
    "BASE_URL": "http://127.0.0.1:5000",
    "MAIL_URL": "outbox:",
    "MAIL_FROM_DOMAIN": "klubpost.localhost",
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    "IMPORT_MAX_ROWS": 1_000_000,
    "IMPORT_MAX_BYTES": 20 * 1024 * 1024,
    "IMPORT_BATCH_ROWS": 20000,
    # A runner that has not finished a batch for this long is taken for dead.
    "IMPORT_LEASE_SECONDS": 60,
    "PASSWORD_HASH_METHOD": "scrypt",
    "WTF_CSRF_TIME_LIMIT": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "BABEL_DEFAULT_LOCALE": "en",
    "LANGUAGES": ("da", "nl", "en"),
    "PAGE_SIZE": 50,
    # The sending engine (campaigns/sending.py): processes per machine (one per
    # core, at most 4: more would mostly open more SMTP and database connections,
    # which mail providers throttle), SMTP connections per process, rows per
    # batch, optional rate limits per machine (messages per second / hour), and
    # how many members a campaign's audience is written down at a time.
    "SEND_PROCESSES": min(os.cpu_count() or 1, 4),
    "SEND_CONNECTIONS": 4,
    "SEND_BATCH_SIZE": 100,
    "SEND_AUDIENCE_CHUNK": 10_000,
    "SEND_LEASE_SECONDS": 300,
    "SEND_RATE_PER_SECOND": None,
    "SEND_RATE_PER_HOUR": None,
    # Tracking (tracking/): raw hits are kept this long, then only the counts;
    # the recorder writes its buffer this often and holds at most this many hits.
    "TRACKING_RETENTION_DAYS": 396,
    # Single mails (confirmations, test sends) hold a name and a working link:
    # once sent or given up on, they are deleted after this many days.
    "MAIL_RETENTION_DAYS": 30,
    "TRACKING_FLUSH_SECONDS": 0.2,
    "TRACKING_BUFFER_MAX": 100_000,
    # Bounces and complaints (campaigns/bounces.py): where reports arrive (an
    # imaps:// or pop3s:// URL the scheduler polls), the webhook's shared secret,
    # and how many temporary failures within how many days bounce a member.
    "BOUNCE_DOMAIN": None,
    "BOUNCE_MAILBOX_URL": None,
    "BOUNCE_POLL_SECONDS": 60,
    "BOUNCE_WEBHOOK_SECRET": None,
    "BOUNCE_SOFT_LIMIT": 3,
    "BOUNCE_SOFT_WINDOW_DAYS": 30,
}

# Numeric settings that may come from the environment.
INT_ENV_KEYS = (
    "SEND_PROCESSES",
    "SEND_CONNECTIONS",
    "SEND_BATCH_SIZE",
    "SEND_AUDIENCE_CHUNK",
    "SEND_LEASE_SECONDS",
    "SEND_RATE_PER_SECOND",
    "SEND_RATE_PER_HOUR",
    "TRACKING_RETENTION_DAYS",
    "MAIL_RETENTION_DAYS",
    "BOUNCE_POLL_SECONDS",
    "BOUNCE_SOFT_LIMIT",
    "BOUNCE_SOFT_WINDOW_DAYS",
)

# Environment variables read as they are (strings); booleans and lists parsed below.
ENV_KEYS = (
    "DATABASE_URL",
    "SECRET_KEY",
    "BASE_URL",
    "MAIL_URL",
    "MAIL_FROM_DOMAIN",
    "BOUNCE_DOMAIN",
    "BOUNCE_MAILBOX_URL",
    "BOUNCE_WEBHOOK_SECRET",
)


def environment_for(config: Mapping[str, Any]) -> dict[str, str]:
    """The environment under which a child process builds the same configuration."""
    env = dict(os.environ)
    env["KLUBPOST_ENV"] = config["ENV"]
    for key in (*ENV_KEYS, *INT_ENV_KEYS):
        if config.get(key) is not None:
            env[key] = str(config[key])
    for key in ("SECRET_KEY_FALLBACKS", "TRACKING_SECRET_KEYS"):
        if config.get(key):
            env[key] = ",".join(config[key])
    return env


def load_config(instance_path: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Build the configuration mapping for an app."""
    config = dict(DEFAULTS)
    config["ENV"] = os.environ.get("KLUBPOST_ENV", config["ENV"])
    for key in ENV_KEYS:
        if os.environ.get(key):
            config[key] = os.environ[key]
    for key in INT_ENV_KEYS:
        if os.environ.get(key):
            config[key] = int(os.environ[key])
    if os.environ.get("SECRET_KEY_FALLBACKS"):
        config["SECRET_KEY_FALLBACKS"] = os.environ["SECRET_KEY_FALLBACKS"].split(",")
    if os.environ.get("TRACKING_SECRET_KEYS"):
        # Newest last: it signs, every listed key still verifies.
        config["TRACKING_SECRET_KEYS"] = os.environ["TRACKING_SECRET_KEYS"].split(",")
    if os.environ.get("IMPORT_MAX_BYTES"):
        config["IMPORT_MAX_BYTES"] = int(os.environ["IMPORT_MAX_BYTES"])
    config.update(overrides or {})

    config["SQLALCHEMY_DATABASE_URI"] = database_url(
        config.get("DATABASE_URL"), instance_path
    )
    if not config.get("SECRET_KEY"):
        if config["ENV"] != "development":
            raise RuntimeError(
                "SECRET_KEY must be set outside development "
                "(set KLUBPOST_ENV=development to use a generated key)"
            )
        config["SECRET_KEY"] = development_secret_key(instance_path)
    config["BASE_URL"] = config["BASE_URL"].rstrip("/")
    # Behind https, the session cookie must never travel over plain http.
    config.setdefault(
        "SESSION_COOKIE_SECURE", config["BASE_URL"].startswith("https://")
    )
    config["TRUSTED_PROXIES"] = int(
        config.get("TRUSTED_PROXIES", os.environ.get("TRUSTED_PROXIES", 0))
    )
    return config


def database_url(url: str | None, instance_path: str) -> str:
    """Normalise DATABASE_URL; default to an SQLite file in the instance folder."""
    if not url:
        return f"sqlite:///{Path(instance_path) / 'klubpost.sqlite3'}"
    # Plain postgres:// URLs (as hosting platforms hand them out) use psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def development_secret_key(instance_path: str) -> str:
    """Read, or create once, the development secret key kept in the instance folder."""
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
