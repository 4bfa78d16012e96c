"""Who may confirm a membership: the person, or staff vouching for consent.

Single opt-in (no confirmation mail) is for a person's own sign-up on the
club's form; people added by staff, the API or an import without consent
given wait for the confirmation mail in every club.
"""

import io

import pytest
from sqlalchemy import select

from accounts.models import Role
from accounts.services import issue_token
from conftest import (
    confirm_from_mail,
    csrf_token,
    login,
    make_club,
    make_library,
    make_subscriber,
    make_user,
    outbox_messages,
    submit_form,
)
from klubpost.mail import deliver_queued
from subscribers.imports import run_pending_imports
from subscribers.mails import queue_import_confirmations
from subscribers.models import ImportJob, Membership, MembershipStatus
from subscribers.services import join_club, unsubscribe


@pytest.fixture
def single(db):
    """A library with a club without double opt-in, and its editor."""
    library = make_library(db)
    club = make_club(db, library, double_opt_in=False)
    return club, make_user(db, library, Role.EDITOR)


def _api(client, db, user):
    _token, clear = issue_token(db.session, user, "test")
    db.session.commit()
    headers = {"Authorization": f"Bearer {clear}"}

    def call(method, url, body):
        return client.open(url, method=method, headers=headers, json=body)

    return call


def _memberships(db):
    db.session.expire_all()
    return db.session.scalars(select(Membership).order_by(Membership.id)).all()


def test_web_import_without_consent_into_a_single_opt_in_club_waits_for_mail(
    client, db, single
):
    club, editor = single
    login(client, editor)
    url = f"/clubs/{club.id}/imports"
    client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "file": (io.BytesIO(b"email\na@example.dk\n"), "members.csv"),
        },
        content_type="multipart/form-data",
    )
    job = db.session.scalar(select(ImportJob))
    mapping = client.get(f"{url}/{job.id}/mapping").get_data(as_text=True)
    assert "gets a confirmation mail" in mapping
    client.post(
        f"{url}/{job.id}/mapping",
        data={"role_0": "email", "consent": "no", "csrf_token": csrf_token(client)},
    )
    run_pending_imports(db.session)
    (membership,) = _memberships(db)
    assert membership.status == MembershipStatus.UNCONFIRMED
    assert membership.confirmed_at is None
    assert membership.consent_source == f"import:{job.id}:confirm-by-mail"
    assert queue_import_confirmations(db.session) == 1
    deliver_queued(db.session)
    (mail,) = outbox_messages(db)
    assert mail["To"] == "a@example.dk"
    confirm_from_mail(client, mail)
    assert _memberships(db)[0].status == MembershipStatus.CONFIRMED


def test_api_import_without_consent_into_a_single_opt_in_club_waits_for_mail(
    app, db, single
):
    club, editor = single
    api = _api(app.test_client(), db, editor)
    records = [{"email": "a@example.dk"}, {"email": "b@example.dk"}]
    response = api("POST", f"/api/clubs/{club.id}/imports", {"records": records})
    assert response.status_code == 201
    assert response.get_json()["counts"]["mails_pending"] == 2
    memberships = _memberships(db)
    assert {m.status for m in memberships} == {MembershipStatus.UNCONFIRMED}
    assert {m.consent_source for m in memberships} == {
        f"api:{editor.id}:confirm-by-mail"
    }
    assert queue_import_confirmations(db.session) == 2


def test_api_import_with_consent_confirms_and_says_so(app, db, single):
    club, editor = single
    api = _api(app.test_client(), db, editor)
    body = {"records": [{"email": "a@example.dk"}], "consent_given": True}
    assert api("POST", f"/api/clubs/{club.id}/imports", body).status_code == 201
    (membership,) = _memberships(db)
    assert membership.status == MembershipStatus.CONFIRMED
    assert membership.consent_source == f"api:{editor.id}:consent-given"


def test_staff_added_member_of_a_single_opt_in_club_gets_the_mail(client, db, single):
    club, editor = single
    login(client, editor)
    url = f"/clubs/{club.id}/members/new"
    response = submit_form(
        client,
        url,
        {
            "email": "mette@example.dk",
            "language": "da",
        },
    )
    assert response.status_code == 302
    (membership,) = _memberships(db)
    assert membership.status == MembershipStatus.UNCONFIRMED
    assert membership.consent_source == f"staff:{editor.id}:confirm-by-mail"
    (mail,) = outbox_messages(db)
    assert "/confirm/" in mail.get_body(("plain",)).get_content()


def test_api_added_member_of_a_single_opt_in_club_gets_the_mail(app, db, single):
    club, editor = single
    api = _api(app.test_client(), db, editor)
    response = api("POST", f"/api/clubs/{club.id}/members", {"email": "a@example.dk"})
    assert response.status_code == 201
    member = response.get_json()
    assert member["status"] == "unconfirmed" and member["confirmation_sent"] is True
    assert member["consent"]["source"] == f"api:{editor.id}:confirm-by-mail"
    assert len(outbox_messages(db)) == 1


def test_own_sign_up_in_a_single_opt_in_club_joins_at_once(client, db, single):
    club, _editor = single
    path = f"/join/{club.library.slug}/{club.slug}"
    response = submit_form(
        client,
        path,
        {
            "email": "ida@example.dk",
            "consent": "y",
        },
    )
    assert response.status_code == 200
    (membership,) = _memberships(db)
    assert membership.status == MembershipStatus.CONFIRMED
    assert membership.consent_source == f"form:{club.slug}"
    assert outbox_messages(db) == []


# ------------------------------------------- members who left: re-invite only


@pytest.fixture
def left(db):
    """An unsubscribed member of a double opt-in club, and an editor."""
    library = make_library(db)
    club = make_club(db, library)
    person = make_subscriber(db, library, "ida@example.dk", first_name="Ida")
    membership = join_club(
        db.session, club, person, source="form", consent_given=True, own_sign_up=True
    )
    membership.tracking_consent = True
    unsubscribe(membership)
    db.session.commit()
    return membership, make_user(db, library, Role.EDITOR)


def _post_status(client, membership, **data):
    page = f"/subscribers/{membership.subscriber_id}"
    data["csrf_token"] = csrf_token(client, page)
    client.post(f"/memberships/{membership.id}", data=data)
    return client.get(page).get_data(as_text=True)


def test_staff_cannot_confirm_a_member_who_left_but_can_re_invite(client, db, left):
    membership, editor = left
    login(client, editor)
    page = _post_status(client, membership, status="confirmed")
    assert "only they can confirm again" in page
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.UNSUBSCRIBED
    assert membership.unsubscribed_at is not None
    old_submitted = membership.submitted_at

    page = _post_status(client, membership, status="unconfirmed")
    assert "confirmation mail has been sent" in page
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.UNCONFIRMED
    assert membership.consent_source == f"staff:{editor.id}:re-invited"
    assert membership.submitted_at > old_submitted
    assert membership.unsubscribed_at is None and membership.confirmed_at is None
    assert membership.tracking_consent is False  # withdrawn with the old record
    (mail,) = outbox_messages(db)

    # Still not theirs to confirm, even in a second step.
    page = _post_status(client, membership, status="confirmed")
    assert "only they can confirm again" in page
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.UNCONFIRMED

    client.get("/logout")
    assert confirm_from_mail(client, mail).status_code == 200
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED


def test_api_refuses_to_confirm_a_bounced_member_and_re_invites(app, db, left):
    membership, editor = left
    membership.status = MembershipStatus.BOUNCED
    db.session.commit()
    api = _api(app.test_client(), db, editor)
    url = f"/api/memberships/{membership.id}"
    response = api("PATCH", url, {"status": "confirmed"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "invalid_transition"
    response = api("PATCH", url, {"status": "unconfirmed"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["confirmation_sent"] is True
    assert body["consent"]["source"] == f"api:{editor.id}:re-invited"
    assert len(outbox_messages(db)) == 1
    assert api("PATCH", url, {"status": "confirmed"}).status_code == 409


def test_adding_a_member_who_left_with_consent_given_is_refused(app, db, left):
    membership, editor = left
    api = _api(app.test_client(), db, editor)
    url = f"/api/clubs/{membership.club_id}/members"
    body = {"subscriber_id": membership.subscriber_id, "consent_given": True}
    response = api("POST", url, body)
    assert response.status_code == 409
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.UNSUBSCRIBED
    response = api("POST", url, {"subscriber_id": membership.subscriber_id})
    assert response.status_code == 201
    assert response.get_json()["consent"]["source"] == f"api:{editor.id}:re-invited"
    assert response.get_json()["confirmation_sent"] is True


def test_staff_confirming_a_pending_member_is_recorded_as_their_word(client, db):
    library = make_library(db)
    club = make_club(db, library)
    person = make_subscriber(db, library)
    membership = join_club(db.session, club, person, source="staff:0")
    db.session.commit()
    editor = make_user(db, library, Role.EDITOR)
    login(client, editor)
    _post_status(client, membership, status="confirmed")
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED
    assert membership.consent_source == f"staff:{editor.id}:consent-given"


def test_staff_may_switch_tracking_off_but_never_on(app, client, db):
    library = make_library(db)
    club = make_club(db, library)
    person = make_subscriber(db, library)
    membership = join_club(db.session, club, person, source="t", consent_given=True)
    db.session.commit()
    editor = make_user(db, library, Role.EDITOR)
    login(client, editor)
    page = _post_status(client, membership, status="confirmed", tracking_consent="y")
    assert "Only the person can agree to tracking" in page
    db.session.refresh(membership)
    assert membership.tracking_consent is False
    api = _api(app.test_client(), db, editor)
    url = f"/api/memberships/{membership.id}"
    response = api("PATCH", url, {"tracking_consent": True})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "tracking_consent"

    membership.tracking_consent = True
    db.session.commit()
    response = api("PATCH", url, {"tracking_consent": False})
    assert response.status_code == 200
    assert response.get_json()["tracking_consent"] is False


def test_api_and_csv_imports_report_line_breaks_in_names(app, client, db, single):
    club, editor = single
    api = _api(app.test_client(), db, editor)
    records = [
        {"email": "a@example.dk", "first_name": "Ane\r\nBcc: x@evil.example"},
        {"email": "b@example.dk", "last_name": "Holm\n"},
        {"email": "c@example.dk", "first_name": "Carl"},
    ]
    body = {"records": records, "consent_given": True}
    job = api("POST", f"/api/clubs/{club.id}/imports", body).get_json()
    assert job["counts"] == {"imported": 1, "invalid_row": 2}
    assert {i["row"] for i in job["issues"]} == {1, 2}

    login(client, editor)
    url = f"/clubs/{club.id}/imports"
    csv = (
        b"email,first_name\n"
        b'd@example.dk,"Dora\nBcc: x@evil.example"\n'
        b"e@example.dk,Eva\n"
    )
    client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "file": (io.BytesIO(csv), "members.csv"),
        },
        content_type="multipart/form-data",
    )
    job = db.session.scalars(select(ImportJob).order_by(ImportJob.id.desc())).first()
    client.post(
        f"{url}/{job.id}/mapping",
        data={
            "role_0": "email",
            "role_1": "first_name",
            "consent": "yes",
            "csrf_token": csrf_token(client),
        },
    )
    run_pending_imports(db.session)
    db.session.expire_all()
    assert job.counts["imported"] == 1 and job.counts["invalid_row"] == 1
    page = client.get(f"{url}/{job.id}").get_data(as_text=True)
    assert "d@example.dk" in page and "line break" in page


def test_staff_adding_a_member_who_left_with_consent_ticked_is_told_why(
    client, db, left
):
    membership, editor = left
    login(client, editor)
    url = f"/clubs/{membership.club_id}/members/new"
    response = submit_form(
        client,
        url,
        {
            "email": "ida@example.dk",
            "language": "da",
            "consent_given": "y",
        },
    )
    assert response.status_code == 400
    assert "only they can confirm again" in response.get_data(as_text=True)
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.UNSUBSCRIBED
