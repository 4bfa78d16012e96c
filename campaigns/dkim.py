"""A library's DKIM key: generated or pasted by its admin, used to sign its mail.

Receivers (and DMARC) trust a signature only if the public key is published in
DNS at `<selector>._domainkey.<domain>` and the domain is the From address's
domain or a parent of it. So the settings page shows the TXT record to publish
and warns about clubs whose sender address the key doesn't cover.

The private key is kept encrypted in the database (Fernet, with a key derived
from SECRET_KEY, which signed links already make permanent) and is never shown
again or exported.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import current_app
from flask_babel import gettext as _

from accounts.models import Library
from accounts.services import DOMAIN_RE
from campaigns.messages import DkimKey, DkimSigner

KEY_BITS = 2048
MIN_KEY_BITS = 1024  # RFC 8301: receivers ignore shorter keys
SELECTOR_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAX_PEM_BYTES = 20_000


class DkimError(Exception):
    """The DKIM settings can't be saved like that; the message says why."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _fernet() -> MultiFernet:
    """Encrypts with SECRET_KEY; also decrypts with SECRET_KEY_FALLBACKS, so a
    rotated secret key doesn't silently switch signing off."""
    config = current_app.config
    secrets = [
        config["SECRET_KEY"],
        *reversed(config.get("SECRET_KEY_FALLBACKS") or []),
    ]
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(hashlib.sha256(b"dkim:" + s.encode()).digest())
            )
            for s in secrets
        ]
    )


def generate_pem() -> bytes:
    """A new 2048-bit RSA private key in PEM (PKCS#8)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load(pem: bytes) -> rsa.RSAPrivateKey:
    if len(pem) > MAX_PEM_BYTES:
        raise DkimError(_("The key is too long."), "private_key")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DkimError(
            _("This is not an unencrypted RSA private key in PEM format."),
            "private_key",
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimError(_("DKIM needs an RSA key."), "private_key")
    if key.key_size < MIN_KEY_BITS:
        raise DkimError(
            _(
                "The key has %(bits)d bits; use at least 1024 (2048 is better).",
                bits=key.key_size,
            ),
            "private_key",
        )
    return key


def configure(
    library: Library, domain: str, selector: str, pem: bytes | None = None
) -> None:
    """Check and store the library's signing settings. Without `pem` the current
    key is kept (a new one is made if there is none)."""
    domain, selector = domain.strip().lower().rstrip("."), selector.strip().lower()
    if pem is None:
        pem = private_pem(library) or generate_pem()
    if not DOMAIN_RE.match(domain):
        raise DkimError(_("Enter a domain name such as bibliotek.dk."), "domain")
    if not SELECTOR_RE.match(selector):
        raise DkimError(
            _("A selector is one word of letters, digits and hyphens, e.g. kp2026."),
            "selector",
        )
    _load(pem)
    library.dkim_domain, library.dkim_selector = domain, selector
    library.dkim_private_key = _fernet().encrypt(pem).decode("ascii")


def disable(library: Library) -> None:
    """Stop signing and forget the key."""
    library.dkim_domain = library.dkim_selector = library.dkim_private_key = None


def private_pem(library: Library) -> bytes | None:
    """The library's decrypted key, or None if it has none (or it can't be read)."""
    if not (library.dkim_private_key and library.dkim_domain and library.dkim_selector):
        return None
    try:
        return _fernet().decrypt(library.dkim_private_key.encode("ascii"))
    except InvalidToken:
        current_app.logger.error(
            "DKIM key of library %s can't be decrypted (SECRET_KEY changed?)",
            library.slug,
        )
        return None


def signer_for(library: Library) -> DkimSigner | None:
    """A signer with the library's key, or None if it doesn't sign."""
    pem = private_pem(library)
    if pem is None:
        return None
    return DkimSigner(DkimKey(library.dkim_domain, library.dkim_selector, pem))


def dns_name(library: Library) -> str | None:
    """Where the public key must be published."""
    if not library.dkim_private_key:
        return None
    return f"{library.dkim_selector}._domainkey.{library.dkim_domain}"


def dns_record(library: Library) -> str | None:
    """The TXT record's value: `v=DKIM1; k=rsa; p=<public key>`."""
    pem = private_pem(library)
    if pem is None:
        return None
    public = (
        _load(pem)
        .public_key()
        .public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode("ascii")


def covers(library: Library, email: str) -> bool:
    """Whether a signature of the library aligns with this From address (DMARC)."""
    domain = email.rpartition("@")[2].lower()
    key = library.dkim_domain or ""
    return bool(key) and (domain == key or domain.endswith("." + key))
