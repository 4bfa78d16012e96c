"""A runner killed halfway through an import: the next one finishes it, exactly.
A sign-up racing an import: the batch is written again, not lost."""

import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import subscribers.imports as imports
from accounts.models import Role
from conftest import TEST_DATABASE_URL, login, make_club, make_library, make_user
from klubpost.db import utcnow
from subscribers.imports import create_job, queue_job, run_pending_imports
from subscribers.models import (
    Club,
    ImportIssue,
    ImportJob,
    ImportStatus,
    Membership,
    MembershipStatus,
    Subscriber,
)
from subscribers.services import create_subscriber, join_club

# Dies with SIGKILL inside the third batch, after that batch's rows were written
# to the database but before its transaction commits. Batches commit in file
# order, so the third commit is the third batch's, after the first two are in;
# on PostgreSQL the fourth batch may be written on the second connection too.
DYING_RUNNER = textwrap.dedent(
    """
    import os, signal, sys
    from klubpost import create_app
    from klubpost.db import db
    import subscribers.imports as imports

    real = imports._commit_batch
    calls = []

    def die_at_the_third_commit(session, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            session.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(session, *args, **kwargs)

    imports._commit_batch = die_at_the_third_commit
    app = create_app({"DATABASE_URL": sys.argv[1], "SECRET_KEY": "t", "TESTING": True})
    with app.app_context():
        imports.run_pending_imports(db.session, batch_rows=10)
    """
)


def _members_csv() -> bytes:
    lines = ["email,first name"]
    for n in range(1, 46):
        lines.append(f"person{n}@example.dk,Person {n}")
        if n == 12:
            lines.append("broken address,No")
        if n == 33:
            # A duplicate of a row before the crash:
            lines.append("PERSON3@example.dk,Again")
            lines.append("also@@broken,No")
        if n == 40:
            lines.append("person35@example.dk,Again")
            lines.append("@example.dk,No")
    return ("\n".join(lines) + "\n").encode()


def test_killed_runner_is_taken_over_and_every_row_counts_once(
    app, client, db, app_config
):
    library = make_library(db)
    club = make_club(db, library)
    job = create_job(db.session, club, filename="m.csv", content=_members_csv())
    queue_job(db.session, job, ["email", "first_name"], consent_given=True)
    db.session.commit()
    assert job.total_rows == 50

    died = subprocess.run(
        [sys.executable, "-c", DYING_RUNNER, app_config["DATABASE_URL"]],
        capture_output=True,
        timeout=120,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()

    db.session.expire_all()
    # Two batches committed; the third, half-written one left nothing behind.
    assert (job.status, job.processed_rows) == (ImportStatus.RUNNING, 20)
    members = select(func.count()).select_from(Membership)
    assert db.session.scalar(members) == 19  # row 13 of the file is broken

    # While the dead runner's lease lasts, nobody takes the job.
    assert run_pending_imports(db.session) == 0
    later = utcnow() + timedelta(seconds=app.config["IMPORT_LEASE_SECONDS"] + 1)
    assert run_pending_imports(db.session, now=later, batch_rows=10) == 1

    db.session.expire_all()
    assert job.status == ImportStatus.DONE
    assert job.processed_rows == 50 and job.resumptions == 1
    assert job.counts == {"imported": 45, "invalid_email": 3, "duplicate": 2}
    assert db.session.scalar(members) == 45
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 45
    issues = db.session.execute(
        select(ImportIssue.row_number, ImportIssue.outcome).order_by(
            ImportIssue.row_number
        )
    ).all()
    assert [tuple(i) for i in issues] == [
        (14, "invalid_email"),
        (36, "duplicate"),
        (37, "invalid_email"),
        (45, "duplicate"),
        (46, "invalid_email"),
    ]

    login(client, make_user(db, library, Role.EDITOR))
    page = client.get(f"/clubs/{club.id}/imports/{job.id}").get_data(as_text=True)
    assert "interrupted 1 time" in page
    assert "duplicate in the file" in page


def test_a_live_runner_keeps_its_job(app, db):
    library = make_library(db)
    club = make_club(db, library)
    job = create_job(db.session, club, filename="m.csv", content=b"email\na@b.dk\n")
    queue_job(db.session, job, ["email"], consent_given=True)
    db.session.commit()
    from subscribers.imports import claim_job

    first = claim_job(db.session)
    assert first is not None and first[0] == job.id
    assert claim_job(db.session) is None  # leased to the first runner
    db.session.expire_all()
    assert db.session.get(ImportJob, job.id).resumptions == 0


@pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="on SQLite a batch holds the only write lock: no sign-up gets between",
)
def test_a_sign_up_racing_an_import_makes_the_batch_run_again(app, db, monkeypatch):
    library = make_library(db)
    club = make_club(db, library)
    content = b"email\na@example.dk\nrace@example.dk\nb@example.dk\n"
    job = create_job(db.session, club, filename="m.csv", content=content)
    queue_job(db.session, job, ["email"], consent_given=True)
    db.session.commit()
    club_id = club.id

    real = imports._known_people
    signed_up = []

    def look_up_then_someone_signs_up(session, club, keys):
        known = real(session, club, keys)
        if not signed_up:  # after the batch looked, before it writes
            with Session(db.engine) as other:
                form_club = other.get(Club, club_id)
                person = create_subscriber(other, form_club.library, "race@example.dk")
                join_club(other, form_club, person, source="form")
                other.commit()
            signed_up.append(True)
        return known

    monkeypatch.setattr(imports, "_known_people", look_up_then_someone_signs_up)
    assert run_pending_imports(db.session) == 1

    db.session.expire_all()
    assert job.status == ImportStatus.DONE, job.error
    assert job.counts == {"imported": 2, "already_member": 1}
    issues = db.session.execute(select(ImportIssue.row_number, ImportIssue.outcome))
    assert [tuple(i) for i in issues] == [(3, "already_member")]
    statuses = db.session.execute(
        select(Subscriber.email, Membership.status)
        .join(Membership)
        .order_by(Subscriber.email)
    ).all()
    assert [tuple(s) for s in statuses] == [
        ("a@example.dk", MembershipStatus.CONFIRMED),
        ("b@example.dk", MembershipStatus.CONFIRMED),
        ("race@example.dk", MembershipStatus.UNCONFIRMED),  # the sign-up's own
    ]


def test_a_runner_that_lost_its_job_commits_nothing_more(app, db, monkeypatch):
    library = make_library(db)
    club = make_club(db, library)
    content = "email\n" + "".join(f"person{n}@example.dk\n" for n in range(1, 46))
    job = create_job(db.session, club, filename="m.csv", content=content.encode())
    queue_job(db.session, job, ["email"], consent_given=True)
    db.session.commit()
    job_id = job.id

    real = imports._begin_batch
    batches: list[int] = []
    taken_over_at: list[int] = []

    def another_runner_takes_the_job_at_the_second_batch(session):
        batches.append(1)
        if len(batches) == 2:
            with Session(db.engine) as other:
                # One statement: the checkpoint as it stands at the takeover.
                checkpoint = other.execute(
                    update(ImportJob)
                    .where(ImportJob.id == job_id)
                    .values(lease_owner="another runner")
                    .returning(ImportJob.processed_rows)
                ).scalar_one()
                taken_over_at.append(checkpoint)
                other.commit()
        real(session)

    monkeypatch.setattr(
        imports, "_begin_batch", another_runner_takes_the_job_at_the_second_batch
    )
    assert run_pending_imports(db.session, batch_rows=10) == 1

    # Nothing after the takeover was committed, on either connection.
    db.session.expire_all()
    assert job.status == ImportStatus.RUNNING
    assert job.lease_owner == "another runner"
    assert job.processed_rows == taken_over_at[0] < 45
    members = select(func.count()).select_from(Membership)
    assert db.session.scalar(members) == job.processed_rows

    # The other runner dies too; the next one finishes the job, each row once.
    monkeypatch.setattr(imports, "_begin_batch", real)
    later = utcnow() + timedelta(seconds=app.config["IMPORT_LEASE_SECONDS"] + 1)
    assert run_pending_imports(db.session, now=later, batch_rows=10) == 1
    db.session.expire_all()
    assert job.status == ImportStatus.DONE
    assert job.counts == {"imported": 45}
    assert db.session.scalar(members) == 45


@pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="on SQLite a batch holds the only write lock: no runner gets between",
)
def test_no_runner_takes_a_job_over_while_a_batch_is_written(app, db, monkeypatch):
    library = make_library(db)
    club = make_club(db, library)
    content = "email\n" + "".join(f"person{n}@example.dk\n" for n in range(1, 26))
    job = create_job(db.session, club, filename="m.csv", content=content.encode())
    queue_job(db.session, job, ["email"], consent_given=True)
    db.session.commit()

    real = imports.apply_records
    claims = []

    def another_runner_tries_to_claim(session, *args, **kwargs):
        # Even with the lease run out, the job is passed by mid-batch.
        later = utcnow() + timedelta(seconds=app.config["IMPORT_LEASE_SECONDS"] + 1)
        with Session(db.engine) as other:
            claims.append(imports.claim_job(other, now=later))
        return real(session, *args, **kwargs)

    monkeypatch.setattr(imports, "apply_records", another_runner_tries_to_claim)
    assert run_pending_imports(db.session, batch_rows=10) == 1

    assert claims == [None, None, None]
    db.session.expire_all()
    assert (job.status, job.resumptions, job.counts) == (
        ImportStatus.DONE,
        0,
        {"imported": 25},
    )
