"""Single mails (confirmations, test sends) go out exactly once, even when the
immediate try and the scheduler reach the same row."""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import make_library
from klubpost import mail as mail_module
from klubpost.db import utcnow
from klubpost.mail import (
    MailStatus,
    QueuedMail,
    deliver_one,
    deliver_queued,
    new_message,
    queue_mail,
)


def _queued(db, library) -> QueuedMail:
    msg = new_message("club@herning.example.dk", "anna@example.dk", "Hej", "x.dk")
    msg.set_content("Hej Anna")
    mail = queue_mail(db.session, msg, library.id)
    db.session.commit()
    return mail


def test_the_scheduler_does_not_send_a_mail_that_is_being_sent(
    smtp_app_config, app, db, smtp_server, monkeypatch
):
    library = make_library(db)
    mail = _queued(db, library)
    send = mail_module.SmtpTransport.send
    scheduler_sent = []

    def send_while_the_scheduler_runs(transport, *args):
        # The scheduler wakes up while this mail is on its way.
        with Session(db.engine) as scheduler:
            scheduler_sent.append(deliver_queued(scheduler))
        send(transport, *args)

    monkeypatch.setattr(
        mail_module.SmtpTransport, "send", send_while_the_scheduler_runs
    )
    assert deliver_one(db.session, mail) is True
    db.session.commit()
    assert scheduler_sent == [0]
    assert len(smtp_server.received) == 1
    assert db.session.get(QueuedMail, mail.id).status == MailStatus.SENT


def test_a_mail_the_scheduler_picked_up_earlier_is_not_sent_twice(
    smtp_app_config, app, db, smtp_server
):
    library = make_library(db)
    mail = _queued(db, library)
    with Session(db.engine) as scheduler:
        stale = scheduler.scalars(select(QueuedMail)).one()  # read while queued
        assert deliver_one(db.session, mail) is True
        db.session.commit()
        assert deliver_one(scheduler, stale) is False
        scheduler.commit()
    assert len(smtp_server.received) == 1


def test_a_claim_left_by_a_crashed_sender_is_retried_after_the_lease(
    smtp_app_config, app, db, smtp_server
):
    from klubpost.mail import CLAIM_LEASE, claim_mail

    library = make_library(db)
    mail = _queued(db, library)
    now = utcnow()
    assert claim_mail(db.session, mail.id, now) is not None
    db.session.commit()  # ... and the sender dies before sending
    assert claim_mail(db.session, mail.id, now) is None
    assert deliver_queued(db.session, now + timedelta(minutes=1)) == 0
    assert smtp_server.received == []
    later = now + CLAIM_LEASE + timedelta(seconds=1)
    assert deliver_queued(db.session, later) == 1
    assert len(smtp_server.received) == 1
    row = db.session.get(QueuedMail, mail.id)
    assert (row.status, row.attempts) == (MailStatus.SENT, 2)


def test_a_temporary_failure_is_retried_with_back_off(
    smtp_app_config, app, db, smtp_server
):
    library = make_library(db)
    mail = _queued(db, library)
    smtp_server.refuse = {"anna": "451 4.3.0 Try again later"}
    now = utcnow()
    assert deliver_one(db.session, mail, now) is False
    db.session.commit()
    row = db.session.get(QueuedMail, mail.id)
    assert row.status == MailStatus.QUEUED and "451" in row.last_error
    assert row.next_attempt_at == now + timedelta(minutes=2)
    smtp_server.refuse = {}
    assert deliver_queued(db.session, now + timedelta(minutes=2)) == 1
    assert len(smtp_server.received) == 1
