"""Signed click and open tokens: opaque ids, never a URL or an address.

A click token names a stored `TrackedLink` and the member's `send_log` row (0
when the club counts anonymously); an open token names the campaign and the
`send_log` row. Tokens never expire: archived newsletters are clicked for years.

Keys rotate: `TRACKING_SECRET_KEYS` lists the keys, newest last. New tokens are
signed with the newest; every listed key still verifies, so a key can be
replaced without breaking the links in mails already sent. Without the setting
the key is derived from `SECRET_KEY` (and its `SECRET_KEY_FALLBACKS`), so that a
leaked tracking key never signs anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from itsdangerous import BadData, Signer
from itsdangerous.encoding import base64_decode

from klubpost.security import (
    InvalidToken,
    PreparedHmac,
    _IdSerializer,
    _PlainHmac,
    urlsafe_b64,
)

CLICK = "click"
OPEN = "open"
MAX_TOKEN = 120  # far longer than any token we make; refused unread
# The payload of every token we make: two ids as compact JSON ("[12,345]").
_TWO_IDS = re.compile(rb"\[(0|[1-9][0-9]{0,18}),(0|[1-9][0-9]{0,18})\]")


def tracking_keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The signing keys, oldest first (the newest signs)."""
    keys = config.get("TRACKING_SECRET_KEYS")
    if keys:
        return tuple(keys)
    secrets = (*(config.get("SECRET_KEY_FALLBACKS") or []), config["SECRET_KEY"])
    return tuple(
        hashlib.sha256(b"klubpost.tracking:" + key.encode()).hexdigest()
        for key in secrets
    )


class _OneShotHMAC(_PlainHmac):
    """HMAC-SHA1 as itsdangerous makes it, through hashlib's one-call C path."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        """The MAC of `value`."""
        return hmac.digest(key, value, "sha1")


class _KeyCachingSigner(Signer):
    """itsdangerous' Signer, deriving each key once instead of for every token."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[str | bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        """The signing key derived from `secret_key` (default: the newest)."""
        derived = self._derived.get(secret_key)
        if derived is None:
            derived = self._derived[secret_key] = super().derive_key(secret_key)
        return derived


class _TokenSerializer(_IdSerializer):
    """The tokens of `_IdSerializer` (itsdangerous' format), read quickly.

    The redirect and the pixel read one token per request, and itsdangerous'
    general path (a signer per call, key derivation, JSON) cost more than the
    rest of the answer. `read_ids` checks the tokens we make, two ids signed with
    one of the keys, with prepared HMACs and a pattern; anything else (a token
    from an older format, a bad signature) goes through `loads`, which decides.
    """

    signer = _KeyCachingSigner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signer = super().make_signer(self.salt)
        self._macs = [
            PreparedHmac(self._signer.derive_key(key), "sha1")
            for key in reversed(self.secret_keys)
        ]

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        """The reused signer (or a new one for another salt)."""
        if salt is None or salt == self.salt:
            return self._signer
        return super().make_signer(salt)

    def read_ids(self, token: str) -> Any:
        """The payload of a token: a tuple of two ids for ours, else what
        `loads` finds (to be checked by the caller).

        Raises what `loads` raises for a token it refuses.
        """
        payload, _, signature = token.rpartition(".")
        if payload.isascii() and signature.isascii() and payload[:1] != ".":
            value, wanted = payload.encode(), signature.encode()
            for mac in self._macs:
                if hmac.compare_digest(urlsafe_b64(mac.digest(value)), wanted):
                    ids = _TWO_IDS.fullmatch(base64_decode(value))
                    if ids is not None:
                        return int(ids[1]), int(ids[2])
                    break
        return self.loads(token)


@lru_cache(maxsize=16)
def _serializer(purpose: str, keys: tuple[str, ...]) -> _TokenSerializer:
    return _TokenSerializer(
        list(keys),
        salt=f"klubpost.track.{purpose}",
        signer_kwargs={"algorithm": _OneShotHMAC()},
    )


class TokenSigner:
    """Signs and verifies the tracking tokens of one configuration."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        keys = tracking_keys(config)
        self._click = _serializer(CLICK, keys)
        self._open = _serializer(OPEN, keys)

    def click(self, link_id: int, send_id: int | None) -> str:
        """The token of one link for one member (send_id None: anonymous)."""
        return self._click.dumps_ids(link_id, send_id or 0)

    def clicks(self, link_ids: Iterable[int], send_id: int | None) -> list[str]:
        """`[click(link_id, send_id) for link_id in link_ids]`, made faster."""
        return self._click.dumps_pairs(link_ids, send_id or 0)

    def open(self, campaign_id: int, send_id: int | None) -> str:
        """The open pixel's token for one member (send_id None: anonymous)."""
        return self._open.dumps_ids(campaign_id, send_id or 0)

    def read_click(self, token: str) -> tuple[int, int | None]:
        """(link id, send id or None) from a click token, or InvalidToken."""
        link_id, send_id = _read(self._click, token)
        return link_id, send_id or None

    def read_open(self, token: str) -> tuple[int, int | None]:
        """(campaign id, send id or None) from an open token, or InvalidToken."""
        campaign_id, send_id = _read(self._open, token)
        return campaign_id, send_id or None


def _read(serializer: _TokenSerializer, token: str) -> tuple[int, int]:
    if len(token) > MAX_TOKEN:
        raise InvalidToken("token too long")
    try:
        ids = serializer.read_ids(token)
    except (BadData, UnicodeError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc
    if type(ids) is not tuple and not (
        type(ids) is list and len(ids) == 2 and all(type(i) is int for i in ids)
    ):
        raise InvalidToken("unexpected token content")
    first, second = ids
    if not (0 < first < 2**63 and 0 <= second < 2**63):
        raise InvalidToken("ids out of range")
    return first, second
