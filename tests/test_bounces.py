"""Bounces and complaints, end to end: a campaign goes out through a real SMTP
server, the bounce reports of real-world formats (tests/bounces/) are built for
the copies it received, and `klubpost bounces`, the webhook, POP3 and IMAP act
on them."""

from __future__ import annotations

import mailbox
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select
from test_sending import make_campaign

from accounts.models import Role
from accounts.services import issue_token
from campaigns import bounces, sending
from campaigns.models import BounceEvent, ScheduleMode, SendLog
from conftest import login, make_club, make_library, make_subscriber, make_user
from subscribers.models import Membership
from subscribers.services import join_club

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
    """A sample report filled in for one received copy."""
    text = (CORPUS / name).read_text()
    for key in ("VERP", "MESSAGE_ID", "EMAIL", "SEND_ID"):
        text = text.replace("{{" + key + "}}", str(copy[key]))
    return text.replace("\n", "\r\n").encode()


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
    files = []
    for n in range(3):
        copy = send_campaign(app, db, smtp_server, club)["m0@example.org"]
        path = tmp_path / f"delayed-{n}.eml"
        path.write_bytes(report("delayed.eml", copy))
        files.append(path)

    for path in files[:2]:
        assert runner.invoke(args=["bounces", str(path)]).exit_code == 0
    # The same warning again (a mail delayed twice) counts once.
    runner.invoke(args=["bounces", str(files[1])])
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
    ],
)
def test_one_rule_decides_what_a_failure_means(status, code, text, kind):
    assert bounces.classify(status, code, text).value == kind
