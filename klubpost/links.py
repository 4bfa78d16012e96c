"""Absolute links for mails, built on BASE_URL rather than the request's host."""

from __future__ import annotations

from typing import Any

from flask import current_app, has_request_context, url_for


def external_url(endpoint: str, **values: Any) -> str:
    """The absolute URL of `endpoint` under the configured BASE_URL.

    Works outside a request too: the scheduler builds mails with links.
    """
    if has_request_context():
        path = url_for(endpoint, **values)
    else:
        path = current_app.url_map.bind("localhost").build(endpoint, values)
    return current_app.config["BASE_URL"] + path
