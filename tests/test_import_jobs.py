"""CSV import through the web pages and the job runner."""

import io

import pytest
from sqlalchemy import func, select

from accounts.models import Role
from conftest import (
    csrf_token,
    login,
    make_club,
    make_library,
    make_subscriber,
    make_user,
    outbox_messages,
)
from klubpost.mail import QueuedMail, deliver_queued
from subscribers.imports import run_pending_imports
from subscribers.mails import CONFIRMATIONS_QUEUED, queue_import_confirmations
from subscribers.models import (
    ImportIssue,
    ImportJob,
    ImportStatus,
    Membership,
    MembershipStatus,
    Subscriber,
)
from subscribers.services import erase


@pytest.fixture
def editor_club(client, db):
    library = make_library(db)
    club = make_club(db, library)
    login(client, make_user(db, library, Role.EDITOR))
    return club


def upload(client, club, content: bytes, filename="members.csv", **form):
    token = csrf_token(client, f"/clubs/{club.id}/imports")
    data = {"csrf_token": token, "file": (io.BytesIO(content), filename), **form}
    return client.post(
        f"/clubs/{club.id}/imports", data=data, content_type="multipart/form-data"
    )


def start(client, club, job_id, roles, consent="yes"):
    url = f"/clubs/{club.id}/imports/{job_id}/mapping"
    data = {f"role_{i}": r for i, r in enumerate(roles)}
    token = csrf_token(client, f"/clubs/{club.id}/imports")
    data.update(csrf_token=token, consent=consent)
    return client.post(url, data=data)


def only_job(db) -> ImportJob:
    (job,) = db.session.scalars(select(ImportJob)).all()
    return job


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_upload_map_run_and_report(client, db, editor_club):
    club = editor_club
    make_subscriber(db, club.library, "known@example.dk")
    content = (
        "E-mail;Fornavn;Efternavn;Børns alder;Filial\r\n"
        "ane@example.dk;Ane;Ørsted;4, 7;Lindholm\r\n"
        "not-an-address;Bo;;;\r\n"
        "ANE@example.dk;Ane;Igen;;\r\n"
        "known@example.dk;Kendt;;;Vejgaard\r\n"
    ).encode()
    response = upload(client, club, content)
    assert response.status_code == 302
    job = only_job(db)
    assert response.headers["Location"].endswith(f"/imports/{job.id}/mapping")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "4 rows" in page and "semicolon" in page and "Ørsted" in page
    assert 'value="email" selected' in page  # guessed from the header

    response = start(
        client,
        club,
        job.id,
        ["email", "first_name", "last_name", "attribute", "attribute"],
    )
    assert response.status_code == 302
    db.session.refresh(job)
    assert job.status == ImportStatus.QUEUED
    progress = client.get(f"/clubs/{club.id}/imports/{job.id}").get_data(as_text=True)
    assert "<progress" in progress and "import-progress.js" in progress
    status = client.get(f"/clubs/{club.id}/imports/{job.id}/status").get_json()
    assert status["status"] == "queued" and status["total_rows"] == 4

    assert run_pending_imports(db.session) == 1
    db.session.expire_all()
    assert job.status == ImportStatus.DONE and job.processed_rows == 4
    assert job.counts == {
        "imported": 2,
        "invalid_email": 1,
        "duplicate": 1,
    }
    ane = db.session.scalar(
        select(Subscriber).where(Subscriber.email_key == "ane@example.dk")
    )
    assert (ane.first_name, ane.last_name) == ("Ane", "Ørsted")
    assert ane.attributes == {"Børns alder": "4, 7", "Filial": "Lindholm"}
    assert ane.memberships[0].status == MembershipStatus.CONFIRMED

    status = client.get(f"/clubs/{club.id}/imports/{job.id}/status").get_json()
    assert status["finished"] and status["processed_rows"] == 4
    report = client.get(f"/clubs/{club.id}/imports/{job.id}").get_data(as_text=True)
    assert "not-an-address" in report and "duplicate in the file" in report
    csv_report = client.get(f"/clubs/{club.id}/imports/{job.id}/report.csv")
    lines = csv_report.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == "row,email,outcome,message"
    assert lines[1].startswith("3,not-an-address,invalid_email,")
    assert lines[2].startswith("4,ANE@example.dk,duplicate,")


def test_without_consent_double_opt_in_queues_confirmation_mails(
    client, db, editor_club
):
    club = editor_club
    upload(client, club, b"email\na@example.dk\nb@example.dk\n")
    job = only_job(db)
    start(client, club, job.id, ["email"], consent="no")
    run_pending_imports(db.session)
    statuses = db.session.scalars(select(Membership.status)).all()
    assert statuses == [MembershipStatus.UNCONFIRMED] * 2
    # The scheduler's next step queues the mails in batches.
    assert queue_import_confirmations(db.session, limit=1) == 1
    assert queue_import_confirmations(db.session, limit=1) == 1
    assert queue_import_confirmations(db.session, limit=1) == 0
    assert count(db, QueuedMail) == 2
    db.session.expire_all()
    assert job.counts[CONFIRMATIONS_QUEUED] == 2
    page = client.get(f"/clubs/{club.id}/imports/{job.id}").get_data(as_text=True)
    assert "confirmation mails queued" in page
    deliver_queued(db.session)
    mails = outbox_messages(db)
    assert sorted(m["To"] for m in mails) == ["a@example.dk", "b@example.dk"]
    assert "/confirm/" in mails[0].get_body(("plain",)).get_content()


def test_suppressed_and_existing_members_are_reported(client, db, editor_club):
    club = editor_club
    erase(db.session, make_subscriber(db, club.library, "gone@example.dk"))
    db.session.commit()
    upload(client, club, b"email\ngone@example.dk\nnew@example.dk\n")
    start(client, club, only_job(db).id, ["email"])
    run_pending_imports(db.session, batch_rows=1)
    upload(client, club, b"email\nnew@example.dk\n")
    second = db.session.scalars(select(ImportJob).order_by(ImportJob.id.desc())).first()
    start(client, club, second.id, ["email"])
    run_pending_imports(db.session)
    outcomes = db.session.scalars(
        select(ImportIssue.outcome).order_by(ImportIssue.id)
    ).all()
    assert outcomes == ["suppressed", "already_member"]
    assert count(db, Subscriber) == 1


def test_mapping_requires_an_email_column_and_a_consent_answer(client, db, editor_club):
    club = editor_club
    upload(client, club, b"name,mail\nAne,ane@example.dk\n")
    job = only_job(db)
    response = start(client, club, job.id, ["first_name", "ignore"])
    assert response.status_code == 400
    assert "Choose the column that holds the e-mail addresses" in response.get_data(
        as_text=True
    )
    response = start(client, club, job.id, ["email", "email"])
    assert response.status_code == 400
    assert "Only one column" in response.get_data(as_text=True)
    response = start(client, club, job.id, ["first_name", "email"], consent="")
    assert response.status_code == 400
    assert "consent" in response.get_data(as_text=True)
    response = start(client, club, job.id, ["first_name", "unknown-role"])
    assert response.status_code == 400
    db.session.refresh(job)
    assert job.status == ImportStatus.UPLOADED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\xef\xbb\xbf\r\n", "The file is empty"),
        (b"email\n", "no rows of members"),
        (b"ane@example.dk,Ane\nbo@example.dk,Bo\n", "holds an e-mail address"),
        (b"email,name\na@example.dk,A\nb@example.dk\n", "Rows with a different"),
        (b'email,name\na@example.dk,"A\n', "not valid CSV"),
        (b'email,name\na@example.dk,"A"B\n', "not valid CSV"),
        (b"PK\x03\x04\x00\x00binary", "binary data"),
        ("email\nå@example.dk\n".encode("utf-16"), "UTF-16"),
        (b"email\n\x81\x8d@example.dk\n", "neither UTF-8 nor Windows-1252"),
    ],
)
def test_bad_files_are_refused_with_a_clear_message(
    client, db, editor_club, content, message
):
    response = upload(client, editor_club, content)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count(db, ImportJob) == 0


def test_encoding_detection_and_explicit_choice(client, db, editor_club):
    content = "email,fornavn\nsoren@example.dk,Søren\n".encode("cp1252")
    assert upload(client, editor_club, content).status_code == 302
    job = only_job(db)
    assert job.encoding == "cp1252"
    page = client.get(f"/clubs/{editor_club.id}/imports/{job.id}/mapping")
    assert "Søren" in page.get_data(as_text=True)

    response = upload(client, editor_club, content, encoding="utf-8")
    assert response.status_code == 400
    assert "not valid UTF-8" in response.get_data(as_text=True)

    bom = "\ufeffemail\tnavn\nø@example.dk\tØ\n".encode()
    assert upload(client, editor_club, bom).status_code == 302
    newest = db.session.scalars(select(ImportJob).order_by(ImportJob.id.desc())).first()
    assert (newest.encoding, newest.delimiter, newest.columns) == (
        "utf-8",
        "\t",
        ["email", "navn"],
    )


def test_reading_again_with_another_encoding(client, db, editor_club):
    content = "email,navn\na@example.dk,Åse\n".encode("latin-1")
    upload(client, editor_club, content, encoding="latin-1", delimiter=";")
    job = only_job(db)
    assert job.columns == ["email,navn"]
    url = f"/clubs/{editor_club.id}/imports/{job.id}/mapping"
    client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "action": "reread",
            "encoding": "latin-1",
            "delimiter": ",",
        },
    )
    db.session.refresh(job)
    assert job.columns == ["email", "navn"]
    assert "Åse" in client.get(url).get_data(as_text=True)


def test_too_large_upload_names_the_limit(app, client, db, editor_club):
    app.config["IMPORT_MAX_BYTES"] = 1024
    response = upload(client, editor_club, b"email\n" + b"a@example.dk\n" * 200)
    assert response.status_code == 413
    assert "at most 1 KB can be imported" in response.get_data(as_text=True)
    assert count(db, ImportJob) == 0


def test_a_100_mb_upload_is_refused_with_413_naming_the_limit(client, db, editor_club):
    token = csrf_token(client, f"/clubs/{editor_club.id}/imports")
    boundary = "klubpostboundary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="csrf_token"\r\n\r\n'
        f"{token}\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="huge.csv"\r\n'
        "Content-Type: text/csv\r\n\r\nemail\r\n"
    ).encode() + b"a@example.dk\r\n" * (100 * 1024 * 1024 // 14)
    response = client.post(
        f"/clubs/{editor_club.id}/imports",
        data=body + f"\r\n--{boundary}--\r\n".encode(),
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 413
    assert "at most 20 MB can be imported" in response.get_data(as_text=True)
    assert count(db, ImportJob) == 0


def test_upload_without_csrf_token_is_refused(client, db, editor_club):
    response = client.post(
        f"/clubs/{editor_club.id}/imports",
        data={"file": (io.BytesIO(b"email\na@example.dk\n"), "m.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert count(db, ImportJob) == 0


def test_upload_without_a_file(client, db, editor_club):
    token = csrf_token(client, f"/clubs/{editor_club.id}/imports")
    response = client.post(
        f"/clubs/{editor_club.id}/imports", data={"csrf_token": token}
    )
    assert response.status_code == 400
    assert "Choose a CSV file" in response.get_data(as_text=True)


def test_staff_cannot_import(client, db):
    library = make_library(db)
    club = make_club(db, library)
    login(client, make_user(db, library, Role.STAFF))
    assert client.get(f"/clubs/{club.id}/imports").status_code == 403


def test_another_librarys_job_is_404_even_under_an_own_club(client, db, editor_club):
    other = make_library(db, slug="utrecht", language="nl")
    other_club = make_club(db, other)
    job = ImportJob(club_id=other_club.id, filename="b.csv", content=b"email\n")
    db.session.add(job)
    db.session.commit()
    for path in ("", "/status", "/report.csv", "/mapping"):
        url = f"/clubs/{editor_club.id}/imports/{job.id}{path}"
        assert client.get(url).status_code == 404


def test_a_started_job_cannot_be_mapped_again(client, db, editor_club):
    upload(client, editor_club, b"email\na@example.dk\n")
    job = only_job(db)
    start(client, editor_club, job.id, ["email"])
    response = start(client, editor_club, job.id, ["email"], consent="no")
    assert response.status_code == 302
    db.session.refresh(job)
    assert job.consent_given is True


def test_cli_runs_queued_imports(client, db, editor_club, runner):
    upload(client, editor_club, b"email\na@example.dk\nb@example.dk\nc@example.dk\n")
    start(client, editor_club, only_job(db).id, ["email"])
    result = runner.invoke(args=["imports", "run", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "1 import(s) processed" in result.output
    assert count(db, Membership) == 3
