"""CSRF protection and the signed, never-expiring tokens used in mails.

Signed links use Flask's SECRET_KEY and SECRET_KEY_FALLBACKS, so keys can be
rotated without breaking links in mails already sent.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Any

from flask import current_app
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature, Serializer, URLSafeSerializer
from itsdangerous.encoding import base64_encode

csrf = CSRFProtect()


class InvalidToken(Exception):
    """A signed token that is forged, tampered with or malformed."""


class _IdSerializer(URLSafeSerializer):
    """URL-safe tokens of a few ids, never compressed.

    Compression never shortens a list of ids, but trying it costs a zlib call per
    token; senders make two tokens per mail. The tokens are the same bytes as
    URLSafeSerializer's, which still reads them (compressed ones too).
    """

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))

    def dumps(self, obj: Any, salt: str | bytes | None = None) -> str:
        """As URLSafeSerializer.dumps, byte for byte; a list of ids is signed
        with a prepared HMAC (mails carry a dozen tokens each, and building a
        Signer and deriving its key for every one of them was most of it)."""
        if salt is not None or not _only_ids(obj):
            return super().dumps(obj, salt)
        payload = base64_encode(b"[" + b",".join(b"%d" % i for i in obj) + b"]")
        mac = self._prepared_mac().copy()
        mac.update(payload)
        return (payload + b"." + base64_encode(mac.digest())).decode("ascii")

    def _prepared_mac(self) -> hmac.HMAC:
        mac = self.__dict__.get("_mac")
        if mac is None:
            signer = self.make_signer()
            mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
            self.__dict__["_mac"] = mac
        return mac


def _only_ids(obj: Any) -> bool:
    return isinstance(obj, list) and all(type(i) is int for i in obj)


@lru_cache(maxsize=64)
def _cached_serializer(purpose: str, keys: tuple[str, ...]) -> URLSafeSerializer:
    return _IdSerializer(list(keys), salt=f"klubpost.{purpose}")


def _serializer(purpose: str) -> URLSafeSerializer:
    fallbacks = current_app.config.get("SECRET_KEY_FALLBACKS") or []
    keys = (*fallbacks, current_app.config["SECRET_KEY"])
    # itsdangerous signs with the last key and accepts every key in the list.
    return _cached_serializer(purpose, keys)


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
