"""The bytes of one newsletter mail, built fast: headers per EMAIL_FACTS, DKIM.

`email.message.EmailMessage` takes about 3 ms to build and serialise a 17 KB
newsletter; at thousands of messages a second that is the whole budget. Everything
that is the same for every recipient (From, Subject, List-Id, the MIME frame) is
encoded once per campaign in a `MessageFrame`; per recipient only the address, the
links, the two quoted-printable bodies and the optional DKIM signature are made.
The result is ordinary RFC 5322 with CRLF line ends, as the standard library's
parser reads it (the tests check that).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formataddr, formatdate
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from klubpost.security import PreparedHmac

CRLF = b"\r\n"
# Header lines may not carry line breaks: a CR or LF in a name or subject would let
# it add headers of its own (header injection).
_LINE_BREAKS = re.compile(r"[\r\n\x00]+")


def one_line(value: str) -> str:
    """The value with line breaks (and NULs) replaced by spaces."""
    return _LINE_BREAKS.sub(" ", value).strip()


def encode_header_value(value: str) -> str:
    """A header value as ASCII: RFC 2047 encoded words when it is not ASCII."""
    value = one_line(value)
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def address(name: str | None, email: str) -> str:
    """A From/To/Reply-To value with the display name safely encoded."""
    return formataddr((one_line(name or ""), one_line(email)), charset="utf-8")


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (lines kept under 78 octets)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    # binascii writes LF (soft and hard breaks alike) unless the input's first line
    # ends in CRLF, which a one-line HTML body does not: encode with LF, then fix.
    return binascii.b2a_qp(data, quotetabs=False, istext=True).replace(b"\n", CRLF)


class QpTemplate:
    """A body encoded to quoted-printable once, with slots filled per recipient.

    Encoding 17 KB of HTML costs about 140 µs; a newsletter differs between
    recipients only in a few slots (name, links). Each fixed piece is encoded once
    and ends in a soft line break, so a slot's encoded value starts on a line of its
    own and no line grows past the limit; decoders drop soft breaks, so the decoded
    text is exactly the pieces and values joined.
    """

    def __init__(self, pieces: list[str], slots: list[str]) -> None:
        if len(pieces) != len(slots) + 1:
            raise ValueError("a template has one more piece than slots")
        self.slots = slots
        self._encoded = [_qp_piece(piece) for piece in pieces]
        # The encoded body as a list with a gap after each piece: a recipient's
        # values go into the gaps, then one join makes the body.
        self._layout: list[bytes] = []
        for encoded in self._encoded:
            self._layout += [encoded, b""]
        self._layout.pop()
        self._gaps = [(2 * n + 1, slot) for n, slot in enumerate(slots)]

    def render(
        self, values: dict[str, str], encoded: dict[str, bytes] | None = None
    ) -> bytes:
        """The encoded body with every slot filled from `values`.

        `encoded` remembers values already encoded (value -> bytes): renderings
        that share values (a mail's HTML and text parts) may pass the same one.
        """
        if encoded is None:
            encoded = {}
        out = self._layout.copy()
        for index, slot in self._gaps:
            value = values[slot]
            piece = encoded.get(value)
            if piece is None:
                piece = encoded[value] = _qp_piece(value)
            out[index] = piece
        return b"".join(out)


QP_LINE = 76  # RFC 2045: at most 76 characters an encoded line
# Printable ASCII except "=": quoted-printable keeps these characters as they
# are, so a value made only of them (a URL, most names) needs no encoder, just
# soft line breaks after every 75 of them, where `binascii.b2a_qp` puts them.
_QP_LITERAL = re.compile(r"[!-<>-~]+")
_QP_SOFT_BREAK = b"=" + CRLF


def _qp_piece(text: str) -> bytes:
    # A lone "." on a line is the one exception b2a_qp makes among these.
    if _QP_LITERAL.fullmatch(text) and text != ".":
        data = text.encode("ascii")
        if len(data) < QP_LINE:
            return data + _QP_SOFT_BREAK
        step = QP_LINE - 1
        return b"".join(
            [data[i : i + step] + _QP_SOFT_BREAK for i in range(0, len(data), step)]
        )
    encoded = _qp(text)
    if not encoded or encoded.endswith(CRLF):
        return encoded
    # A trailing space or tab would be lost before the soft break: encode it.
    if encoded[-1:] in (b" ", b"\t"):
        encoded = encoded[:-1] + b"=%02X" % encoded[-1]
    head, sep, last = encoded.rpartition(CRLF)
    if len(last) >= QP_LINE:
        # The soft break's "=" would make the line too long: break earlier, but
        # not inside an "=XX" escape.
        cut = QP_LINE - 3
        cut -= 2 if last[cut - 2 : cut - 1] == b"=" else last[cut - 1 : cut] == b"="
        last = last[:cut] + b"=" + CRLF + last[cut:]
        encoded = head + sep + last
    return encoded + _QP_SOFT_BREAK


@dataclass(frozen=True)
class DkimKey:
    """A library's DKIM signing key: domain (d=), selector (s=) and RSA key."""

    domain: str
    selector: str
    private_key_pem: bytes

    def loaded(self) -> rsa.RSAPrivateKey:
        """The key as an OpenSSL object (0.3 ms a signature, not dkimpy's 8 ms)."""
        key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("DKIM key must be an RSA private key")
        return key


# Signed headers: the list headers must be among them, or receivers ignore
# one-click unsubscribe (dkimpy's default set leaves List-Unsubscribe-Post out).
DKIM_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
)
# Runs of two or more spaces/tabs, or a tab (a single space stays as it is).
_WSP_RUN = re.compile(rb" [ \t]+|\t[ \t]*")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")


def _relaxed_body(body: bytes) -> bytes:
    # Quoted-printable bodies seldom need either rule: look before rewriting.
    if b"  " in body or b"\t" in body:
        body = _WSP_RUN.sub(b" ", body)
    if b" \r\n" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    # Empty lines at the end go. (Not with a regex: `(\r\n)+$` is tried at
    # every line end of the body, which made this 4 ms for a newsletter.)
    end = len(body)
    while body.endswith(CRLF, 0, end):
        end -= 2
    return body[:end] + CRLF if end else b""


def _relaxed_header(name: str, value: str) -> bytes:
    value = re.sub(r"\r\n", "", value)
    value = re.sub(r"[ \t]+", " ", value).strip()
    return f"{name.lower()}:{value}".encode("ascii")


class DkimSigner:
    """Signs finished messages with rsa-sha256, relaxed/relaxed (RFC 6376)."""

    def __init__(self, key: DkimKey) -> None:
        self.key = key
        self._private = key.loaded()

    def signature_header(self, headers: list[tuple[str, str]], body: bytes) -> str:
        """The DKIM-Signature header line (without CRLF) for these headers and body."""
        present = {name.lower() for name, _ in headers}
        signed = [name for name in DKIM_HEADERS if name in present]
        body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())
        tags = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={self.key.domain};"
            f" s={self.key.selector}; t={int(time.time())};"
            f" h={':'.join(signed)}; bh={body_hash.decode()}; b="
        )
        by_name = {}
        # With repeated headers DKIM signs the last one first; ours are unique.
        for name, value in headers:
            by_name[name.lower()] = value
        data = CRLF.join(_relaxed_header(name, by_name[name]) for name in signed)
        data += CRLF + _relaxed_header("dkim-signature", tags)
        signature = self._private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return "DKIM-Signature: " + tags + base64.b64encode(signature).decode()


@dataclass(frozen=True)
class MessageFrame:
    """What every message of one campaign shares, encoded once."""

    from_name: str
    from_email: str
    subject: str
    list_id: str  # e.g. "Debatklubben <debat.herning.dk>"
    message_id_domain: str
    bounce_domain: str
    verp_secret: bytes
    reply_to: str | None = None
    dkim: DkimSigner | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    _fixed: list[tuple[str, str]] = field(default_factory=list, compare=False)
    # The encoded fixed headers and MIME frame, per boundary (see `_encoded`).
    _bytes: dict[str, tuple[bytes, ...]] = field(default_factory=dict, compare=False)
    _verp: list[PreparedHmac] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        fixed = [("From", address(self.from_name, self.from_email))]
        if self.reply_to:
            fixed.append(("Reply-To", address(None, self.reply_to)))
        fixed.append(("Subject", encode_header_value(self.subject)))
        fixed.append(("List-Id", encode_header_value(self.list_id)))
        fixed.extend((n, encode_header_value(v)) for n, v in self.extra_headers)
        self._fixed.extend(fixed)
        self._verp.append(PreparedHmac(self.verp_secret, "sha256"))

    def return_path(self, send_id: int) -> str:
        """The VERP envelope sender naming this send: bounces+<id>.<mac>@domain."""
        mac = self._verp[0].hexdigest(str(send_id).encode())
        return f"bounces+{send_id}.{mac[:10]}@{self.bounce_domain}"

    def _encoded(self, boundary: str) -> tuple[bytes, ...]:
        """What every message with this MIME boundary shares, as bytes: the
        headers before To, those after List-Unsubscribe (with the blank line),
        and the MIME frame before the text part, between the parts, at the end.
        """
        parts = self._bytes.get(boundary)
        if parts is None:
            b = boundary.encode()
            before = b"".join(_fold(name, value) + CRLF for name, value in self._fixed)
            after = b"".join(
                _fold(name, value) + CRLF for name, value in _frame_headers(boundary)
            )
            parts = self._bytes[boundary] = (
                before,
                after + CRLF,
                b"--" + b + CRLF + _PART_HEADERS % b"plain",
                CRLF + b"--" + b + CRLF + _PART_HEADERS % b"html",
                CRLF + b"--" + b + b"--" + CRLF,
            )
        return parts


_PART_HEADERS = (
    b"Content-Type: text/%s; charset=utf-8"
    + CRLF
    + b"Content-Transfer-Encoding: quoted-printable"
    + CRLF
    + CRLF
)


def _frame_headers(boundary: str) -> list[tuple[str, str]]:
    """The headers after the recipient's own, the same in every message."""
    return [
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]


def verp_send_id(recipient: str, secret: bytes) -> int | None:
    """The send id of a VERP bounce address, if its MAC is right (else None)."""
    match = re.match(r"bounces\+(\d+)\.([0-9a-f]{10})@", recipient.strip("<>"))
    if not match:
        return None
    send_id = match.group(1)
    mac = hmac.new(secret, send_id.encode(), "sha256").hexdigest()[:10]
    return int(send_id) if hmac.compare_digest(mac, match.group(2)) else None


@dataclass(frozen=True)
class BuiltMessage:
    """A finished message: envelope sender, Message-ID and the bytes to send."""

    envelope_from: str
    message_id: str
    data: bytes


# One MIME boundary per process (new after a fork): it need not be secret.
_PROCESS = [secrets.token_hex(8)]
os.register_at_fork(
    after_in_child=lambda: _PROCESS.__setitem__(0, secrets.token_hex(8))
)


def build_message(
    frame: MessageFrame,
    *,
    send_id: int,
    to_email: str,
    to_name: str | None,
    html: str | bytes,
    text: str | bytes,
    unsubscribe_url: str,
) -> BuiltMessage:
    """One recipient's multipart/alternative message (text first, then HTML).

    `html` and `text` are either strings or bodies already quoted-printable encoded
    (bytes, from `QpTemplate.render`).
    """
    # Unguessable, so that a Message-ID quoted in a report can't be made up.
    message_id = f"<{send_id}.{secrets.token_hex(8)}@{frame.message_id_domain}>"
    # "=_" never occurs in a quoted-printable body ("=" is encoded as "=3D"), so
    # one boundary per process is safe; no per-message randomness is needed.
    boundary = "=_kp" + _PROCESS[0]
    before, after, text_start, html_start, end = frame._encoded(boundary)
    personal = [
        ("To", recipient_address(to_name, to_email)),
        ("Date", _date_header()),
        ("Message-ID", message_id),
        ("List-Unsubscribe", f"<{one_line(unsubscribe_url)}>"),
    ]
    # Only these headers and the two bodies are this recipient's: the message
    # is one join of them and the pieces encoded once for the campaign.
    own = (
        f"To: {personal[0][1]}\r\nDate: {personal[1][1]}\r\n"
        f"Message-ID: {message_id}\r\nList-Unsubscribe: {personal[3][1]}\r\n"
    ).encode("ascii")
    text = text if isinstance(text, bytes) else _qp(text)
    html = html if isinstance(html, bytes) else _qp(html)
    if frame.dkim is None:
        data = b"".join([before, own, after, text_start, text, html_start, html, end])
    else:
        body = b"".join([text_start, text, html_start, html, end])
        headers = frame._fixed + personal + _frame_headers(boundary)
        signature = _fold_dkim(frame.dkim.signature_header(headers, body))
        data = b"".join([signature, CRLF, before, own, after, body])
    return BuiltMessage(
        envelope_from=frame.return_path(send_id),
        message_id=message_id,
        data=data,
    )


@lru_cache(maxsize=4096)
def _display_name(name: str) -> str:
    """How `formataddr` writes the display name `name` (quoted, or RFC 2047
    encoded when it is not ASCII). Names repeat across a club's members and the
    encoding is the slow part of an address, so they are remembered."""
    return formataddr((name, "a@b"), charset="utf-8")[: -len(" <a@b>")]


def recipient_address(name: str | None, email: str) -> str:
    """`address(name, email)`, faster for the many recipients of a campaign."""
    name, email = one_line(name or ""), one_line(email)
    if not email.isascii():
        return address(name, email)  # refused there, as it always was
    return f"{_display_name(name)} <{email}>" if name else email


# (second, Date header): mails built in the same second share their Date.
_DATE = [(0, "")]


def _date_header() -> str:
    """The Date header of a message made now (RFC 5322, GMT)."""
    now = int(time.time())
    second, value = _DATE[0]
    if second != now:
        value = formatdate(now, usegmt=True)
        _DATE[0] = (now, value)
    return value


def _fold(name: str, value: str) -> bytes:
    """`Name: value` as ASCII; long encoded values are already folded with CRLF."""
    return f"{name}: {value}".encode("ascii")


def _fold_dkim(line: str) -> bytes:
    """The DKIM-Signature header folded at its tag separators (relaxed-safe)."""
    return line.replace("; ", ";\r\n\t").encode("ascii")
