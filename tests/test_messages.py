"""Newsletter mails are read by mail clients and checked by receivers: parse them so."""

import email
from email import policy

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from campaigns.messages import (
    DkimKey,
    DkimSigner,
    MessageFrame,
    QpTemplate,
    address,
    build_message,
    recipient_address,
    verp_send_id,
)

SECRET = b"verp-secret"
HTML = (
    "<!doctype html><html><body><h1>Debataften: Klima &amp; kunst</h1>"
    + "<p>Kære Åse, vi ses torsdag.</p>" * 200
    + '<a href="https://bib.example/u">Afmeld</a></body></html>'
)
TEXT = "Debataften: Klima & kunst\n\nKære Åse, vi ses torsdag.\n\nAfmeld: https://bib.example/u"


def _frame(**kw) -> MessageFrame:
    values = dict(
        from_name="Herning Bibliotekerne – Debatklubben",
        from_email="debat@herning.example",
        reply_to="svar@herning.example",
        subject="Debataften: klima og kunst på biblioteket",
        list_id="Debatklubben <debat.herning.example>",
        message_id_domain="herning.example",
        bounce_domain="bounce.herning.example",
        verp_secret=SECRET,
    )
    values.update(kw)
    return MessageFrame(**values)


def _build(frame: MessageFrame, **kw):
    values = dict(
        send_id=4711,
        to_email="aase@example.dk",
        to_name="Åse Sørensen",
        html=HTML,
        text=TEXT,
        unsubscribe_url="https://bib.example/unsubscribe/abc.def",
    )
    values.update(kw)
    return build_message(frame, **values)


def _parse(data: bytes):
    return email.message_from_bytes(data, policy=policy.default)


def test_message_reads_as_multipart_alternative_text_then_html():
    built = _build(_frame())
    msg = _parse(built.data)

    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == TEXT
    assert "Kære Åse" in parts[1].get_content()
    assert str(msg["From"]) == (
        "Herning Bibliotekerne – Debatklubben <debat@herning.example>"
    )
    assert str(msg["To"]) == "Åse Sørensen <aase@example.dk>"
    assert msg["Subject"] == "Debataften: klima og kunst på biblioteket"
    assert msg["Reply-To"] == "svar@herning.example"
    assert msg["Message-ID"] == built.message_id
    assert built.message_id.endswith("@herning.example>")
    assert msg["Date"]
    assert msg["List-Id"] == "Debatklubben <debat.herning.example>"
    assert msg["List-Unsubscribe"] == "<https://bib.example/unsubscribe/abc.def>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_every_line_ends_in_crlf_and_stays_short():
    data = _build(_frame()).data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_line_breaks_in_names_and_subjects_cannot_add_headers():
    frame = _frame(
        from_name="Evil\r\nBcc: victim@example.org",
        subject="Hello\nX-Injected: yes",
    )
    msg = _parse(_build(frame, to_name="Eve\r\nCc: more@example.org").data)

    assert msg["Bcc"] is None and msg["Cc"] is None and msg["X-Injected"] is None
    assert msg["Subject"] == "Hello X-Injected: yes"


def test_each_message_has_its_own_message_id():
    frame = _frame()
    ids = {_build(frame, send_id=n).message_id for n in range(50)}
    assert len(ids) == 50


def test_verp_return_path_names_the_send_and_cannot_be_forged():
    frame = _frame()
    built = _build(frame, send_id=4711)

    assert built.envelope_from.startswith("bounces+4711.")
    assert built.envelope_from.endswith("@bounce.herning.example")
    assert verp_send_id(built.envelope_from, SECRET) == 4711
    forged = built.envelope_from.replace("4711", "4712")
    assert verp_send_id(forged, SECRET) is None
    assert verp_send_id(built.envelope_from, b"other-secret") is None
    assert verp_send_id("someone@example.org", SECRET) is None


@pytest.fixture(scope="module")
def dkim_key():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return DkimKey("herning.example", "kp2026", pem), record


def test_dkim_signature_verifies_and_covers_the_list_headers(dkim_key):
    key, record = dkim_key
    frame = _frame(dkim=DkimSigner(key))
    data = _build(frame).data

    def dns(name, timeout=5):
        assert name == b"kp2026._domainkey.herning.example."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    signature = _parse(data)["DKIM-Signature"]
    signed = signature.split("h=")[1].split(";")[0].replace(" ", "").split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(
        signed
    )


def test_dkim_fails_when_the_message_is_changed(dkim_key):
    key, record = dkim_key
    data = _build(_frame(dkim=DkimSigner(key))).data

    def dns(name, timeout=5):
        return record

    tampered_body = data.replace(b"torsdag", b"fredag", 1)
    tampered_header = data.replace(
        b"List-Unsubscribe: <https://bib.example",
        b"List-Unsubscribe: <https://evil.example",
        1,
    )
    assert not dkim.verify(tampered_body, dnsfunc=dns)
    assert not dkim.verify(tampered_header, dnsfunc=dns)


def test_prepared_bodies_decode_to_exactly_the_filled_in_text():
    pieces = ["<p>Kære ", ',   </p>\n<a href="', '">Afmeld ', " </a>" * 40]
    template = QpTemplate(pieces, ["name", "url", "tail"])
    values = {
        "name": "Åse " * 30,
        "url": "https://bib.example/u/" + "x" * 120,
        "tail": "\t",
    }
    frame = _frame()
    html = (
        "".join(
            piece + values[slot]
            for piece, slot in zip(pieces, ["name", "url", "tail", None], strict=True)
            if slot
        )
        + pieces[-1]
    )

    msg = _parse(_build(frame, html=template.render(values), text="x").data)

    assert list(msg.iter_parts())[1].get_content().replace("\r\n", "\n") == html
    data = _build(frame, html=template.render(values), text="x").data
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


@pytest.mark.parametrize("length", [74, 75, 76, 77, 150])
@pytest.mark.parametrize("filler", ["a", "=", "é", "a "])
def test_qp_template_lines_stay_within_76_and_decode_exactly(length, filler):
    import quopri

    value = (filler * length)[:length]
    template = QpTemplate(["<p>" + "x" * 70, "</p>\n" + value], ["slot"])
    encoded = template.render({"slot": value})
    assert quopri.decodestring(encoded).decode() == (
        "<p>" + "x" * 70 + value + "</p>\r\n" + value
    )
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76


@pytest.mark.parametrize("length", [1, 74, 75, 76, 77, 150, 151, 152, 300])
def test_url_like_values_stay_within_76_and_decode_exactly(length):
    import quopri
    import random

    rng = random.Random(length)
    # Printable ASCII without "=" (the characters kept as they are), with many
    # dots, which must survive at the start of a line.
    alphabet = [chr(c) for c in range(33, 127) if c != 61] + ["."] * 20
    for _ in range(200):
        value = "".join(rng.choice(alphabet) for _ in range(length))
        template = QpTemplate(['<a href="', '">'], ["url"])
        encoded = template.render({"url": value})
        assert quopri.decodestring(encoded).decode() == '<a href="' + value + '">'
        assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
    lone_dot = QpTemplate(["a\n", "\nb"], ["slot"]).render({"slot": "."})
    assert b"\r\n.\r\n" not in lone_dot  # (it would end the SMTP message)


@pytest.mark.parametrize(
    "name",
    ["", "Bo Jensen", "Åse Sørensen", "Jensen, Bo", 'Bo "B" Jensen', "A\r\nBcc: x"],
)
def test_recipient_address_is_the_address(name):
    assert recipient_address(name, "bo@example.dk") == address(name, "bo@example.dk")
    assert recipient_address(name, "bo@example.dk") == address(name, "bo@example.dk")


def test_relaxed_body_canonicalization_matches_dkimpy():
    import random

    from dkim.canonicalization import Relaxed

    from campaigns.messages import _relaxed_body

    rng = random.Random(3)
    pieces = [b"a", b"=3D", b" ", b"  ", b"\t", b" \t ", b"\r\n", b"\r\n\r\n", b"x"]
    for _ in range(2000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        assert _relaxed_body(body) == Relaxed.canonicalize_body(body), body
