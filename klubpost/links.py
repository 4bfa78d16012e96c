"""Absolute links for mails, built on BASE_URL rather than the request's host."""

from __future__ import annotations

from typing import Any

from flask import current_app, url_for


def external_url(endpoint: str, **values: Any) -> str:
    """The absolute URL of `endpoint` under the configured BASE_URL."""
    return current_app.config["BASE_URL"] + url_for(endpoint, **values)
