"""CSRF protection and the signed, never-expiring tokens used in mails.

Signed links use Flask's SECRET_KEY and SECRET_KEY_FALLBACKS, so keys can be
rotated without breaking links in mails already sent.
"""

from __future__ import annotations

from flask import current_app
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature, URLSafeSerializer

csrf = CSRFProtect()


class InvalidToken(Exception):
    """A signed token that is forged, tampered with or malformed."""


def _serializer(purpose: str) -> URLSafeSerializer:
    fallbacks = current_app.config.get("SECRET_KEY_FALLBACKS") or []
    keys = [*fallbacks, current_app.config["SECRET_KEY"]]
    # itsdangerous signs with the last key and accepts every key in the list.
    return URLSafeSerializer(keys, salt=f"klubpost.{purpose}")


def sign(purpose: str, *ids: int) -> str:
    """A URL-safe signed token carrying only ids (never an address)."""
    return _serializer(purpose).dumps(list(ids))


def unsign(purpose: str, token: str, count: int) -> list[int]:
    """The ids in a token made by `sign` for the same purpose, or InvalidToken."""
    if len(token) > 200:
        raise InvalidToken("token too long")
    try:
        ids = _serializer(purpose).loads(token)
    except BadSignature as exc:
        raise InvalidToken(str(exc)) from exc
    if (
        not isinstance(ids, list)
        or len(ids) != count
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise InvalidToken("unexpected token content")
    return ids
