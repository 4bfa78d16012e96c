"""A library's own DKIM key: set up by its admin, used on every campaign mail."""

import base64
import html
import re

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_sending import _start_now, add_members, make_campaign

from accounts.models import Role
from campaigns import sending
from conftest import csrf_token, login, make_club, make_library, make_user

# A throw-away 512-bit key: too short for DKIM (RFC 8301), refused.
WEAK_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEArH9f6K+LMvg6kXMQ
7POxu8GWP2xWCaJv3c5mhm4Hb0DYEw6ZQ29WqwJN06lldcpeWMEGO5s+84n2yqBB
XUCXkQIDAQABAkARmxqN5ETf2egYalci6CiO0k5kgMkzSIoEaImcVOSbXSbh3LHn
GNNktl5B23AVUtQmADKzaRP07xWNgHHvv2ZBAiEA5Slg3+MuDxDjvXxtuFAllhUT
qx4eWz52iK38SI23fukCIQDAsx6FJJmEAzkMj/assmkjA2fT1uKGeg8p0AU99d76
aQIhAK5Z6xCsQfDIgt05/CiNIeusIYjBo4r8XSbkaNuypvdxAiEAuuX/2AsjilLF
5lVLXzy7lGYdMe3dT6jbRCaqrunmFuECIQCxpyZz/nNzagjVYQ+UMEG7M0CONwj8
dRpH5YetvhO9bQ==
-----END PRIVATE KEY-----
"""
RECORD_RE = re.compile(r'<code class="wrap" id="dkim-record">([^<]+)</code>')


@pytest.fixture
def library(db):
    return make_library(db, domain="herning.example.dk")


@pytest.fixture
def admin_client(client, db, library):
    login(client, make_user(db, library, Role.ADMIN))
    return client


def _save(client, **data):
    data.setdefault("domain", "herning.example.dk")
    data.setdefault("selector", "kp2026")
    data.setdefault("private_key", "")
    data["csrf_token"] = csrf_token(client, "/library/dkim")
    return client.post("/library/dkim", data=data)


def _published_record(client) -> bytes:
    page = client.get("/library/dkim").get_data(as_text=True)
    match = RECORD_RE.search(page)
    assert match, "the page shows no DNS record"
    return html.unescape(match.group(1)).encode()


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_a_generated_key_signs_every_campaign_mail_verifiably(
    smtp_app_config, smtp_server, app, db, library, admin_client
):
    club = make_club(db, library)
    assert _save(admin_client).status_code == 302
    record = _published_record(admin_client)
    assert record.startswith(b"v=DKIM1; k=rsa; p=")
    add_members(db, club, 5)
    _start_now(db, make_campaign(db, club))

    assert sending.Sender(app, connections=1).run() == 5

    def dns(name, timeout=5):
        assert name == b"kp2026._domainkey.herning.example.dk."
        return record

    for message, (_from, _to, data) in zip(
        smtp_server.messages, smtp_server.received, strict=True
    ):
        assert dkimpy.verify(data, dnsfunc=dns), "signature does not verify"
        header = re.sub(r"\s+", "", str(message["DKIM-Signature"]))
        tags = dict(part.split("=", 1) for part in header.split(";") if part)
        assert tags["d"] == "herning.example.dk" and tags["s"] == "kp2026"
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(
            tags["h"].split(":")
        )


def test_the_key_is_stored_encrypted_and_never_shown(db, library, admin_client):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _save(admin_client, private_key=_pem(key)).status_code == 302
    db.session.refresh(library)
    assert "PRIVATE KEY" not in library.dkim_private_key
    page = admin_client.get("/library/dkim").get_data(as_text=True)
    assert "PRIVATE KEY-----" not in page.replace("-----BEGIN PRIVATE KEY-----", "", 1)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert _published_record(admin_client).endswith(base64.b64encode(public))


@pytest.mark.parametrize(
    ("data", "field_message"),
    [
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nnonsense\n"}, "PEM"),
        ({"selector": "two words"}, "selector"),
        ({"domain": "not a domain"}, "bibliotek.dk"),
        ({"private_key": WEAK_KEY}, "512"),
        ({"private_key": _pem(ec.generate_private_key(ec.SECP256R1()))}, "RSA"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    db, library, admin_client, data, field_message
):
    response = _save(admin_client, **data)
    assert response.status_code == 400
    assert field_message in response.get_data(as_text=True)
    db.session.refresh(library)
    assert library.dkim_private_key is None and library.dkim_selector is None


def test_switching_signing_off_deletes_the_key(
    smtp_app_config, smtp_server, app, db, library, admin_client
):
    club = make_club(db, library)
    _save(admin_client)
    response = admin_client.post(
        "/library/dkim/delete", data={"csrf_token": csrf_token(admin_client)}
    )
    assert response.status_code == 302
    db.session.refresh(library)
    assert library.dkim_private_key is None
    add_members(db, club, 2)
    _start_now(db, make_campaign(db, club))
    sending.Sender(app, connections=1).run()
    assert all(b"DKIM-Signature" not in d for _f, _t, d in smtp_server.received)
    assert len(smtp_server.received) == 2


def test_clubs_sending_from_another_domain_are_pointed_out(db, library, admin_client):
    make_club(db, library, slug="vip", from_email="vip@other.example.org")
    make_club(db, library, slug="debat")  # debat@herning.example.dk: covered
    _save(admin_client)
    page = admin_client.get("/library/dkim").get_data(as_text=True)
    assert "vip@other.example.org" in page
    assert "debat@herning.example.dk" not in page


@pytest.mark.parametrize("role", [Role.EDITOR, Role.STAFF])
def test_only_admins_manage_the_key(client, db, library, role):
    login(client, make_user(db, library, role))
    assert client.get("/library/dkim").status_code == 403
    response = client.post(
        "/library/dkim/delete", data={"csrf_token": csrf_token(client, "/clubs")}
    )
    assert response.status_code == 403


def test_a_delete_without_csrf_token_is_refused(db, library, admin_client):
    _save(admin_client)
    assert admin_client.post("/library/dkim/delete").status_code == 400
    db.session.refresh(library)
    assert library.dkim_private_key is not None


def test_saving_without_a_key_keeps_the_key_and_only_the_button_makes_a_new_one(
    db, library, admin_client
):
    _save(admin_client)
    record = _published_record(admin_client)
    assert _save(admin_client, selector="kp2027").status_code == 302
    assert _published_record(admin_client) == record  # same key, new selector
    db.session.refresh(library)
    assert library.dkim_selector == "kp2027"
    assert _save(admin_client, action="generate").status_code == 302
    assert _published_record(admin_client) != record


def test_a_rotated_secret_key_still_reads_the_stored_key(app, db, library):
    from campaigns import dkim

    with app.test_request_context():
        dkim.configure(library, "herning.example.dk", "kp2026")
        record = dkim.dns_record(library)
        app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
        app.config["SECRET_KEY"] = "a-new-secret"
        assert dkim.dns_record(library) == record
        assert dkim.signer_for(library) is not None
