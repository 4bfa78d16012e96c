"""Erasing a person leaves no copy of their address or their mails behind."""

from datetime import timedelta

from sqlalchemy import select

from campaigns.models import BounceEvent, BounceKind, BounceReport
from conftest import (
    csrf_token,
    make_club,
    make_library,
    make_subscriber,
)
from klubpost.db import utcnow
from klubpost.mail import MailStatus, OutboxMessage, QueuedMail, purge_done_mail
from klubpost.security import sign
from subscribers.mails import queue_confirmation
from subscribers.models import ImportIssue, ImportJob, Membership, Subscriber
from subscribers.services import join_club


def _import_issue(db, club, email):
    job = ImportJob(club_id=club.id, filename="members.csv", content=b"email\n")
    db.session.add(job)
    db.session.flush()
    issue = ImportIssue(
        job_id=job.id, row_number=2, email=email, outcome="duplicate", message=""
    )
    db.session.add(issue)
    return issue


def _bounce(db, email, library_id=None):
    report = BounceReport(digest=f"{email}{library_id}".ljust(64, "0"), source="test")
    db.session.add(report)
    db.session.flush()
    event = BounceEvent(
        report_id=report.id,
        library_id=library_id,
        kind=BounceKind.HARD,
        email=email,
        status="5.1.1",
        diagnostic=f"550 5.1.1 <{email}>: no such user",
        action="unmatched",
    )
    db.session.add(event)
    return event


def _erase_through_the_link(client, subscriber_id):
    erase = f"/preferences/{sign('manage', subscriber_id)}/erase"
    response = client.post(erase, data={"csrf_token": csrf_token(client, erase)})
    assert response.status_code == 200


def test_erasure_deletes_mails_to_the_address_and_blanks_it_elsewhere(client, db):
    herning = make_library(db)
    utrecht = make_library(db, slug="utrecht", language="nl")
    club = make_club(db, herning)
    other_club = make_club(db, utrecht)
    anna = make_subscriber(db, herning, "Anna@Example.dk", first_name="Anna")
    # One confirmation went out (the dev outbox keeps a copy), one is queued.
    client.post(
        "/join/herning/debat",
        data={
            "email": "anna@example.dk",
            "consent": "y",
            "csrf_token": csrf_token(client, "/join/herning/debat"),
        },
    )
    queue_confirmation(db.session, db.session.scalar(select(Membership)))
    _import_issue(db, club, " ANNA@example.dk")
    unmatched = _bounce(db, "anna@example.dk")
    # The same address at another library is that library's business.
    namesake = make_subscriber(db, utrecht, "anna@example.dk")
    kept_mail = queue_confirmation(
        db.session, join_club(db.session, other_club, namesake, source="test")
    )
    kept_issue = _import_issue(db, other_club, "anna@example.dk")
    kept_bounce = _bounce(db, "anna@example.dk", library_id=utrecht.id)
    db.session.commit()
    assert {m.status for m in db.session.scalars(select(QueuedMail))} == {
        MailStatus.SENT,
        MailStatus.QUEUED,
    }
    assert db.session.scalar(select(OutboxMessage)) is not None

    _erase_through_the_link(client, anna.id)

    db.session.expire_all()
    assert db.session.scalars(select(QueuedMail.id)).all() == [kept_mail.id]
    assert db.session.scalars(select(OutboxMessage)).all() == []
    issues = {i.id: i.email for i in db.session.scalars(select(ImportIssue))}
    assert issues[kept_issue.id] == "anna@example.dk"
    assert [e for i, e in issues.items() if i != kept_issue.id] == [""]
    assert db.session.get(BounceEvent, unmatched.id).email == ""
    assert "anna" not in db.session.get(BounceEvent, unmatched.id).diagnostic
    assert db.session.get(BounceEvent, kept_bounce.id).email == "anna@example.dk"
    assert db.session.scalar(
        select(Subscriber.id).where(Subscriber.library_id == utrecht.id)
    )


def test_the_queued_confirmation_of_an_erased_person_is_never_sent(app, client, db):
    from klubpost.mail import deliver_queued

    library = make_library(db)
    club = make_club(db, library)
    anna = make_subscriber(db, library, "anna@example.dk", first_name="Anna")
    queue_confirmation(db.session, join_club(db.session, club, anna, source="test"))
    db.session.commit()
    _erase_through_the_link(client, anna.id)
    assert deliver_queued(db.session) == 0
    assert db.session.scalars(select(OutboxMessage)).all() == []


def test_sent_single_mails_are_deleted_after_the_retention_period(app, db):
    library = make_library(db)
    club = make_club(db, library)
    now = utcnow()
    rows = {}
    for name, status, age in (
        ("old_sent", MailStatus.SENT, 31),
        ("old_failed", MailStatus.FAILED, 31),
        ("old_queued", MailStatus.QUEUED, 31),
        ("new_sent", MailStatus.SENT, 1),
    ):
        subscriber = make_subscriber(db, library, f"{name}@example.dk")
        mail = queue_confirmation(
            db.session, join_club(db.session, club, subscriber, source="test")
        )
        mail.status, mail.created_at = status, now - timedelta(days=age)
        rows[name] = mail.id
    db.session.commit()
    assert purge_done_mail(db.session, now) == 2
    left = set(db.session.scalars(select(QueuedMail.id)))
    assert left == {rows["old_queued"], rows["new_sent"]}
