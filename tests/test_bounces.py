"""Bounces and complaints, end to end: a campaign goes out through a real SMTP
server, the bounce reports of real-world formats (tests/bounces/) are built for
the copies it received, and `klubpost bounces`, the webhook, POP3 and IMAP act
on them."""

from __future__ import annotations

import imaplib
import mailbox
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from test_sending import make_campaign

from accounts.models import Role
from accounts.services import issue_token
from campaigns import bounces, sending
from campaigns.models import BounceEvent, ScheduleMode, SendLog
from conftest import (
    _free_port,
    login,
    make_club,
    make_library,
    make_subscriber,
    make_user,
)
from subscribers.models import Membership
from subscribers.services import erase, join_club

CORPUS = Path(__file__).parent / "bounces"


@pytest.fixture
def club(db):
    library = make_library(db, timezone="Europe/Copenhagen")
    return make_club(db, library)


def add_members(db, club, count: int) -> list[Membership]:
    """Confirmed members m0@example.org, m1@example.org, ..."""
    members = []
    for n in range(count):
        person = make_subscriber(db, club.library, f"m{n}@example.org")
        members.append(
            join_club(db.session, club, person, source="test", consent_given=True)
        )
    db.session.commit()
    return members


def send_campaign(app, db, smtp_server, club, **kw) -> dict[str, dict[str, str]]:
    """Send a campaign to the club; per recipient what the server received."""
    campaign = make_campaign(db, club, **kw)
    sending.schedule(campaign, ScheduleMode.NOW)
    db.session.commit()
    sending.start_due(db.session)
    already = len(smtp_server.received)
    sending.Sender(app, connections=1).run()
    copies = {}
    for envelope_from, recipients, data in smtp_server.received[already:]:
        send_id = envelope_from.split("+", 1)[1].split(".", 1)[0]
        copies[recipients[0]] = {
            "VERP": envelope_from,
            "MESSAGE_ID": message_from_bytes(data)["Message-ID"],
            "EMAIL": recipients[0],
            "SEND_ID": send_id,
            "campaign_id": campaign.id,
        }
    return copies


def report(name: str, copy: dict[str, str]) -> bytes:
    """A sample report filled in for one received copy (with a Message-ID of its
    own, as every real report has)."""
    text = (CORPUS / name).read_text()
    for key in ("VERP", "MESSAGE_ID", "EMAIL", "SEND_ID"):
        text = text.replace("{{" + key + "}}", str(copy[key]))
    head, body = text.split("\n\n", 1)
    head = re.sub(r"(?im)^(message-id:\s*<)", rf"\g<1>{uuid.uuid4().hex}.", head)
    return (head + "\n\n" + body).replace("\n", "\r\n").encode()


def statuses(db, members) -> list[str]:
    db.session.expire_all()
    return [m.status.value for m in members]


def copy_status(db, copy) -> str:
    return db.session.get(SendLog, int(copy["SEND_ID"])).status.value


# One sample per member; what each should do to them.
SAMPLES = [
    ("postfix.eml", "bounced"),
    ("exim.eml", "bounced"),
    ("sendmail.eml", "bounced"),
    ("qmail.eml", "bounced"),
    ("exchange.eml", "bounced"),
    ("gmail.eml", "bounced"),
    ("yahoo.eml", "bounced"),
    ("delayed.eml", "confirmed"),
    ("policy.eml", "confirmed"),
    ("arf-yahoo-aol.eml", "unsubscribed"),
    ("jmrp-microsoft.eml", "unsubscribed"),
    ("autoreply.eml", "confirmed"),
    ("forged.eml", "confirmed"),
]


def test_real_world_reports_in_a_maildir_change_exactly_the_right_members(
    smtp_app_config, smtp_server, app, db, club, runner, client, tmp_path
):
    members = add_members(db, club, len(SAMPLES) + 1)
    copies = send_campaign(app, db, smtp_server, club)
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for n, (name, _expected) in enumerate(SAMPLES):
        maildir.add(report(name, copies[f"m{n}@example.org"]))

    result = runner.invoke(args=["bounces", str(tmp_path / "Maildir")])

    assert result.exit_code == 0, result.output
    assert "13 message(s) read" in result.output
    assert "7 bounced" in result.output and "2 unsubscribed" in result.output
    assert "2 ignored" in result.output  # the auto-reply and the forged one
    expected = [want for _name, want in SAMPLES] + ["confirmed"]
    assert statuses(db, members) == expected
    by_name = {name: copies[f"m{n}@example.org"] for n, (name, _) in enumerate(SAMPLES)}
    assert copy_status(db, by_name["postfix.eml"]) == "bounced"
    assert copy_status(db, by_name["policy.eml"]) == "bounced"  # it did not arrive
    assert copy_status(db, by_name["delayed.eml"]) == "sent"  # still on its way
    assert copy_status(db, by_name["arf-yahoo-aol.eml"]) == "sent"
    assert copy_status(db, by_name["forged.eml"]) == "sent"
    complained = members[9]
    assert complained.unsubscribed_at is not None

    # Processing the same mailbox again changes nothing more.
    again = runner.invoke(args=["bounces", str(tmp_path / "Maildir")])
    assert "11 seen before" in again.output and "no member changed" in again.output
    events = db.session.scalars(select(BounceEvent)).all()
    assert len(events) == 11
    assert statuses(db, members) == expected

    # Staff see why: the member page and the campaign page.
    login(client, make_user(db, club.library, Role.STAFF))
    page = client.get(f"/subscribers/{members[0].subscriber_id}")
    text = page.get_data(as_text=True)
    assert "Bounced on" in text and "5.1.1" in text and "User unknown" in text
    page = client.get(f"/subscribers/{members[9].subscriber_id}")
    assert "Complained" in page.get_data(as_text=True)
    page = client.get(f"/campaigns/{by_name['policy.eml']['campaign_id']}")
    text = page.get_data(as_text=True)
    assert "1 refusal for policy reasons" in text
    assert "5.7.1" in text and "blocked using a reputation list" in text
    assert 'id="fig-bounced">8<' in text  # seven hard bounces and the refusal


def test_temporary_failures_bounce_a_member_only_after_the_limit(
    smtp_app_config, smtp_server, app, db, club, runner, tmp_path
):
    app.config["BOUNCE_SOFT_LIMIT"] = 3
    member = add_members(db, club, 1)[0]
    files, copies = [], []
    for n in range(3):
        copies.append(send_campaign(app, db, smtp_server, club)["m0@example.org"])
        warning = tmp_path / f"delayed-{n}.eml"
        warning.write_bytes(report("delayed.eml", copies[-1]))
        # Delay warnings: the server still tries; they never count.
        assert "1 delayed" in runner.invoke(args=["bounces", str(warning)]).output
        path = tmp_path / f"failed-{n}.eml"
        path.write_bytes(report("full-mailbox.eml", copies[-1]))
        files.append(path)
    assert statuses(db, [member]) == ["confirmed"]

    for path in files[:2]:
        assert runner.invoke(args=["bounces", str(path)]).exit_code == 0
    # The same report again changes nothing; another failure report about the
    # same mail is a new report, but the same mail: it counts once.
    assert "1 seen before" in runner.invoke(args=["bounces", str(files[1])]).output
    later = tmp_path / "failed-1-later.eml"
    later.write_bytes(
        report("full-mailbox.eml", copies[1]).replace(b"9Lgi3R1", b"9Lgi3R2")
    )
    assert "1 counted" in runner.invoke(args=["bounces", str(later)]).output
    assert statuses(db, [member]) == ["confirmed"]

    result = runner.invoke(args=["bounces", str(files[2])])

    assert "1 bounced" in result.output
    assert statuses(db, [member]) == ["bounced"]


def test_an_mbox_file_is_read_message_by_message(
    smtp_app_config, smtp_server, app, db, club, runner, tmp_path
):
    members = add_members(db, club, 2)
    copies = send_campaign(app, db, smtp_server, club)
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    box.add(report("qmail.eml", copies["m0@example.org"]))
    box.add(report("jmrp-microsoft.eml", copies["m1@example.org"]))
    box.close()

    result = runner.invoke(args=["bounces", str(tmp_path / "bounces.mbox")])

    assert "2 message(s) read" in result.output, result.output
    assert statuses(db, members) == ["bounced", "unsubscribed"]

    # Erasing the person erases their bounces too (the diagnostics name them).
    erase(db.session, members[0].subscriber)
    db.session.commit()
    left = db.session.scalars(select(BounceEvent.diagnostic)).all()
    assert len(left) == 1 and not any("m0@example.org" in d for d in left)


def test_an_address_alone_counts_only_from_a_library_never_from_the_mailbox(
    smtp_app_config, smtp_server, app, db, club, runner, client, tmp_path
):
    members = add_members(db, club, 2)
    copies = send_campaign(app, db, smtp_server, club)
    old = db.session.get(SendLog, int(copies["m1@example.org"]["SEND_ID"]))
    old.sent_at -= timedelta(days=60)  # long before any bounce would come back
    db.session.commit()
    reports = []
    for n in range(2):
        # Only the quoted List-Id and address: what anyone who has seen one of
        # the club's newsletters could write to the bounce mailbox.
        copy = {
            **copies[f"m{n}@example.org"],
            "VERP": "bounces@klubpost.localhost",
            "MESSAGE_ID": f"<unknown-{n}@relay.example.org>",
        }
        reports.append(report("postfix.eml", copy))
        (tmp_path / "reports").mkdir(exist_ok=True)
        (tmp_path / "reports" / f"{n}.eml").write_bytes(reports[-1])

    result = runner.invoke(args=["bounces", str(tmp_path / "reports")])
    assert "2 unmatched" in result.output
    assert statuses(db, members) == ["confirmed", "confirmed"]

    # The library itself (its API token) may name members by address: recent
    # copies in the quoted club only.
    headers = {"Authorization": f"Bearer {_token(db, club.library)}"}
    for body in reports:
        client.post(
            "/api/bounces",
            # (another report: the mailbox has already seen these)
            data=re.sub(rb"(?im)^(Message-ID: <)", rb"\1api-", body, count=1),
            content_type="message/rfc822",
            headers=headers,
        )
    assert statuses(db, members) == ["bounced", "confirmed"]


def test_the_command_refuses_unclear_sources(runner, tmp_path):
    result = runner.invoke(args=["bounces"])
    assert result.exit_code == 2 and "BOUNCE_MAILBOX_URL" in result.output
    result = runner.invoke(args=["bounces", "--pop3", "ftp://a:b@host"])
    assert result.exit_code == 2 and "pop3://" in result.output
    result = runner.invoke(args=["bounces", "--imap", "imap://host/INBOX"])
    assert result.exit_code == 1 and "user:password@host" in result.output


# ----------------------------------------------------------------- the webhook


def _token(db, library, role=Role.EDITOR) -> str:
    email = f"{role.value}-hook@{library.slug}.example.org"
    user = make_user(db, library, role, email=email)
    _row, clear = issue_token(db.session, user, "bounces")
    db.session.commit()
    return clear


def test_the_webhook_takes_a_raw_report_with_the_shared_secret(
    smtp_app_config, smtp_server, app, db, club, client
):
    app.config["BOUNCE_WEBHOOK_SECRET"] = "s3cret-hook"
    members = add_members(db, club, 2)
    copies = send_campaign(app, db, smtp_server, club)
    body = report("gmail.eml", copies["m0@example.org"])

    def post(data, secret="s3cret-hook", content_type="message/rfc822"):
        return client.post(
            "/api/bounces",
            data=data,
            content_type=content_type,
            headers={"Authorization": f"Bearer {secret}"},
        )

    assert post(body, secret="wrong").status_code == 401
    response = post(body)
    assert response.status_code == 200, response.get_json()
    finding = response.get_json()["findings"][0]
    assert finding["kind"] == "hard" and finding["action"] == "bounced"
    assert finding["status"] == "5.1.1"
    assert post(body).get_json()["duplicate"] is True
    assert statuses(db, members) == ["bounced", "confirmed"]

    forged = post(report("forged.eml", copies["m1@example.org"]))
    assert forged.status_code == 422
    assert forged.get_json()["error"]["code"] == "forged"
    not_a_report = post(b"Subject: hello\r\n\r\nJust a note.\r\n")
    assert not_a_report.get_json()["error"]["code"] == "not_a_report"
    assert post(b"").status_code == 400
    assert post(b"x", content_type="text/plain").status_code == 415
    auto = post(report("autoreply.eml", copies["m1@example.org"]))
    assert auto.status_code == 200 and auto.get_json()["ignored"] == "auto-reply"
    assert statuses(db, members) == ["bounced", "confirmed"]


def test_the_webhook_takes_provider_events_as_json_within_the_token_library(
    smtp_app_config, smtp_server, app, db, club, client
):
    members = add_members(db, club, 3)
    copies = send_campaign(app, db, smtp_server, club)
    token = _token(db, club.library)
    other_library = make_library(db, "utrecht", language="nl")
    other_token = _token(db, other_library)

    def post(payload, token=token):
        return client.post(
            "/api/bounces", json=payload, headers={"Authorization": f"Bearer {token}"}
        )

    complaint = {"type": "complaint", "email": "m0@example.org"}
    # Another library's token can't touch this library's members.
    response = post(complaint, token=other_token)
    assert response.get_json()["findings"][0]["action"] == "unmatched"
    assert statuses(db, members)[0] == "confirmed"

    assert post(complaint).get_json()["findings"][0]["action"] == "unsubscribed"
    hard = {
        "type": "bounce",
        "message_id": copies["m1@example.org"]["MESSAGE_ID"].strip("<>"),
        "status": "5.1.1",
        "diagnostic": "550 5.1.1 mailbox does not exist",
    }
    assert post(hard).get_json()["findings"][0]["action"] == "bounced"
    policy = {"type": "bounce", "email": "m2@example.org", "status": "5.7.26"}
    assert post(policy).get_json()["findings"][0]["action"] == "reported"
    assert statuses(db, members) == ["unsubscribed", "bounced", "confirmed"]

    staff_token = _token(db, club.library, Role.STAFF)
    assert post(complaint, token=staff_token).status_code == 403
    assert post(complaint, token="kp_nonsense").status_code == 401
    for bad, field in [
        ({"type": "bounce", "email": "m2@example.org"}, "status"),
        ({"type": "bounce", "email": "m2@example.org", "status": "2.0.0"}, "status"),
        ({"type": "complaint"}, "email"),
        ({"type": "spam", "email": "m2@example.org"}, "type"),
        ({"type": "complaint", "email": "m2@example.org", "x": 1}, "x"),
    ]:
        response = post(bad)
        assert response.status_code == 422, bad
        assert response.get_json()["error"]["field"] == field
    assert statuses(db, members) == ["unsubscribed", "bounced", "confirmed"]


# ----------------------------------------------------------------- classifying


@pytest.mark.parametrize(
    ("status", "code", "text", "kind"),
    [
        ("5.1.1", None, "", "hard"),
        ("5.2.1", None, "", "hard"),
        ("5.4.4", None, "", "hard"),
        ("5.0.0", 550, "5.1.10 Recipient not found", "hard"),
        ("5.0.0", 554, "delivery error: dd This user doesn't have an account", "hard"),
        ("4.2.2", None, "", "soft"),
        ("5.2.2", None, "mailbox full", "soft"),
        ("5.7.1", None, "", "policy"),
        ("5.7.26", None, "unauthenticated", "policy"),
        ("5.3.4", None, "message too big", "policy"),
        (None, 550, "5.7.1 rejected as spam", "policy"),
        (None, 554, "Transaction failed", "policy"),
        (None, 550, "Requested action not taken", "hard"),
        (None, 451, "Try again later", "soft"),
        ("4.0.0", None, "user unknown, try again later", "soft"),
    ],
)
def test_one_rule_decides_what_a_failure_means(status, code, text, kind):
    assert bounces.classify(status, code, text).value == kind


# ----------------------------------------------------------------- POP3 and IMAP


class Dovecot:
    """A real Dovecot IMAP and POP3 server with one mailbox, run from a temporary
    folder with a generated configuration (no system set-up is touched)."""

    BINARY = shutil.which("dovecot") or "/usr/sbin/dovecot"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.user, self.password = "bounces", "pa ss/w@rd"
        self.imap_port, self.pop3_port = _free_port(), _free_port()
        self.imaps_port, self.pop3s_port = _free_port(), _free_port()
        self.certificate = root / "cert.pem"
        _self_signed(self.certificate, root / "key.pem")
        (root / "run").mkdir()
        (root / "home").mkdir()
        (root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        internal, login, owner = self._accounts()
        if os.geteuid() == 0:
            os.chown(root / "home", owner.pw_uid, owner.pw_gid)
        (root / "dovecot.conf").write_text(
            CONFIG.format(
                root=root,
                internal=internal,
                login=login,
                uid=owner.pw_uid,
                gid=owner.pw_gid,
                imap=self.imap_port,
                pop3=self.pop3_port,
                imaps=self.imaps_port,
                pop3s=self.pop3s_port,
            )
        )

    @staticmethod
    def _accounts():
        """Dovecot's login processes refuse to run as root: use its own users."""
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return me.pw_name, me.pw_name, me
        return "dovecot", "dovenull", pwd.getpwnam("dovecot")

    def start(self) -> None:
        """Start it and wait until both protocols answer."""
        self.process = subprocess.Popen(
            [self.BINARY, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                for port in (self.imap_port, self.pop3s_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def stop(self) -> None:
        """Stop the server (and wait for it)."""
        self.process.terminate()
        self.process.wait(timeout=10)

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text() if path.exists() else ""

    def url(self, scheme: str, suffix: str = "") -> str:
        port = {
            "imap": self.imap_port,
            "imaps": self.imaps_port,
            "pop3": self.pop3_port,
            "pop3s": self.pop3s_port,
        }[scheme]
        password = quote(self.password, safe="")
        return f"{scheme}://{self.user}:{password}@127.0.0.1:{port}{suffix}"

    def imap(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port)
        conn.login(self.user, self.password)
        return conn

    def deliver(self, *messages: bytes, folder: str = "INBOX") -> None:
        """Put messages into a folder (IMAP APPEND, as a delivery agent would)."""
        conn = self.imap()
        conn.create(folder)
        for raw in messages:
            conn.append(folder, None, None, raw)
        conn.logout()

    def count(self, folder: str = "INBOX") -> int:
        conn = self.imap()
        status, data = conn.select(folder)
        conn.logout()
        return int(data[0]) if status == "OK" else 0


CONFIG = """
base_dir = {root}/run
state_dir = {root}/run/state
log_path = {root}/log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
  }}
}}
service anvil {{
  chroot =
}}
pop3_uidl_format = %08Xu%08Xv
"""


def _self_signed(cert_path: Path, key_path: Path) -> None:
    """A certificate for 127.0.0.1 that the tests trust through SSL_CERT_FILE."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def dovecot(tmp_path) -> Iterator[Dovecot]:
    if not Path(Dovecot.BINARY).exists():
        reason = (
            "Dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
        )
        if os.environ.get("KLUBPOST_REQUIRE_DOVECOT") == "1":
            pytest.fail(f"{reason}; it is required here.", pytrace=False)
        pytest.skip(f"{reason}; set KLUBPOST_REQUIRE_DOVECOT=1 to fail instead")
    # A short folder: Dovecot's socket paths must stay under the OS limit.
    root = Path(tempfile.mkdtemp(prefix="kp-dove-"))
    root.chmod(0o755)
    server = Dovecot(root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_reports_are_fetched_by_pop3_and_deleted_once_processed(
    smtp_app_config, smtp_server, app, db, club, runner, dovecot, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.certificate))
    members = add_members(db, club, 3)
    copies = send_campaign(app, db, smtp_server, club)
    dovecot.deliver(
        report("postfix.eml", copies["m0@example.org"]),
        report("arf-yahoo-aol.eml", copies["m1@example.org"]),
        report("autoreply.eml", copies["m2@example.org"]),
    )

    result = runner.invoke(args=["bounces", "--pop3", dovecot.url("pop3s")])

    assert result.exit_code == 0, result.output
    assert "3 message(s) read" in result.output
    assert statuses(db, members) == ["bounced", "unsubscribed", "confirmed"]
    assert dovecot.count() == 0  # all three were dealt with, so deleted
    again = runner.invoke(args=["bounces", "--pop3", dovecot.url("pop3")])  # plain
    assert "0 message(s) read" in again.output


def test_the_scheduler_polls_an_imap_mailbox_and_moves_what_it_processed(
    smtp_app_config, smtp_server, app, db, club, dovecot, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.certificate))
    import scheduler

    members = add_members(db, club, 2)
    copies = send_campaign(app, db, smtp_server, club)
    dovecot.deliver(
        report("exchange.eml", copies["m0@example.org"]),
        report("policy.eml", copies["m1@example.org"]),
    )
    dovecot.deliver(folder="Processed")
    app.config["BOUNCE_MAILBOX_URL"] = dovecot.url("imaps", "/INBOX?move=Processed")

    scheduler.read_bounces(app)

    assert statuses(db, members) == ["bounced", "confirmed"]
    assert dovecot.count("INBOX") == 0 and dovecot.count("Processed") == 2
    policy = db.session.scalar(select(BounceEvent).filter_by(kind="policy"))
    assert policy.status == "5.7.1" and policy.action == "reported"


def test_a_server_whose_certificate_is_not_trusted_gets_no_password(
    runner, dovecot, monkeypatch
):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    for scheme, option in (("imaps", "--imap"), ("pop3s", "--pop3")):
        result = runner.invoke(args=["bounces", option, dovecot.url(scheme)])
        assert result.exit_code == 1
        assert "CERTIFICATE_VERIFY_FAILED" in result.output
    assert "Login: user=<bounces>" not in dovecot.log()


def test_a_wrong_mailbox_password_is_a_clear_error(runner, dovecot):
    url = dovecot.url("imap").replace("pa%20ss", "nope")
    result = runner.invoke(args=["bounces", "--imap", url])
    assert result.exit_code == 1
    assert "imap://127.0.0.1" in result.output and "AUTHENTICATIONFAILED" in (
        result.output.upper().replace(" ", "")
    )


ODD_MESSAGES = [
    b"garbage without any header",
    b"\x00\xff\xfe\x80",
    b"Subject: no From header at all\r\n\r\nflufl.bounce's Yale detector trips.\r\n",
    b"From: MAILER-DAEMON@mx.example.org\r\nContent-Type: text/plain; "
    b"charset=no-such-charset\r\n\r\n<a@example.org>: 550 5.1.1 user unknown\r\n",
    b"From: \xe6\xf8\xe5 <x@example.org>\r\nAuto-Submitted: \xff\r\n"
    b"Subject: \xe6\r\n\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno parts",
    b"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n"
    b"\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\n\r\n--b--\r\n",
]


@pytest.mark.parametrize("body", ODD_MESSAGES)
def test_odd_messages_get_a_clear_answer_never_a_server_error(app, client, body):
    app.config["BOUNCE_WEBHOOK_SECRET"] = "s3cret-hook"
    response = client.post(
        "/api/bounces",
        data=body,
        content_type="message/rfc822",
        headers={"Authorization": "Bearer s3cret-hook"},
    )
    assert response.status_code in (200, 422), response.get_data(as_text=True)
    assert "error" in response.get_json() or response.get_json()["findings"]
