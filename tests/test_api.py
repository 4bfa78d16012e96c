"""The JSON API: every endpoint, every role, isolation, and bad input."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import func, select

from accounts.models import Consortium, Role
from accounts.services import issue_token, revoke_token
from campaigns.models import Template
from campaigns.services import create_campaign, create_event
from conftest import (
    confirm_from_mail,
    make_club,
    make_library,
    make_subscriber,
    make_user,
    outbox_messages,
)
from klubpost.mail import QueuedMail
from subscribers.models import (
    Club,
    ConsentText,
    ImportIssue,
    Membership,
    MembershipStatus,
    Subscriber,
    Suppression,
)
from subscribers.services import join_club
from tracking.models import TrackingMode


def bearer(db, user) -> dict[str, str]:
    """Authorization headers with a fresh token of `user`."""
    _token, clear = issue_token(db.session, user, "test")
    db.session.commit()
    return {"Authorization": f"Bearer {clear}"}


class Api:
    """A cookie-free client that speaks JSON with one user's token."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def __call__(self, method, url, body=None, **kw):
        headers = {**self.headers, **kw.pop("headers", {})}
        if body is not None:
            kw["data"] = json.dumps(body)
            kw.setdefault("content_type", "application/json")
        return self.client.open(url, method=method, headers=headers, **kw)

    def get(self, url, **kw):
        return self("GET", url, **kw)


@pytest.fixture
def herning(db):
    """A library with a double opt-in club, and one user per role."""
    library = make_library(db)
    club = make_club(db, library)
    users = {
        role: make_user(db, library, role)
        for role in Role
        if role.value != "consortium_admin"
    }
    return library, club, users


@pytest.fixture
def as_role(app, db, herning):
    """An API client acting as the Herning user with the given role."""
    _library, _club, users = herning

    def make(role: Role) -> Api:
        return Api(app.test_client(), bearer(db, users[role]))

    return make


def error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["message"]
    return body["error"]


# ---------------------------------------------------------------- authentication


def test_requests_without_a_valid_token_get_401(app, db, herning):
    _library, _club, users = herning
    client = app.test_client()
    headers = bearer(db, users[Role.ADMIN])
    for bad in ({}, {"Authorization": "Bearer kp_forged"}, {"Authorization": "kp_x"}):
        response = client.get("/api/clubs", headers=bad)
        assert response.status_code == 401
        assert error(response)["code"] == "unauthorized"
    assert client.get("/api/clubs", headers=headers).status_code == 200

    revoked = bearer(db, users[Role.EDITOR])
    from accounts.models import ApiToken

    revoke_token(db.session.scalars(select(ApiToken)).all()[-1])
    db.session.commit()
    assert client.get("/api/clubs", headers=revoked).status_code == 401

    users[Role.ADMIN].active = False
    db.session.commit()
    assert client.get("/api/clubs", headers=headers).status_code == 401


def test_the_api_sets_no_cookie_and_needs_no_csrf_token(as_role):
    api = as_role(Role.ADMIN)
    response = api(
        "POST",
        "/api/clubs",
        {"name": "VIP", "slug": "vip", "from_name": "VIP", "from_email": "v@x.dk"},
    )
    assert response.status_code == 201
    assert "Set-Cookie" not in response.headers


def test_errors_speak_the_users_language(db, as_role, herning):
    herning[2][Role.STAFF].language = "da"
    db.session.commit()
    response = as_role(Role.STAFF)("DELETE", f"/api/clubs/{herning[1].id}")
    assert response.status_code == 403
    assert "rolle" in error(response)["message"]


# ---------------------------------------------------------------- libraries


def test_libraries_list_and_show(db, as_role, herning):
    library = herning[0]
    make_library(db, slug="utrecht", language="nl")
    api = as_role(Role.STAFF)
    items = api.get("/api/libraries").get_json()["items"]
    assert [i["slug"] for i in items] == ["herning"]
    shown = api.get(f"/api/libraries/{library.id}").get_json()
    assert shown["name"] == library.name and shown["language"] == "da"


def test_consortium_admin_sees_every_library_of_the_consortium(app, db):
    consortium = Consortium(name="Nord", slug="nord")
    db.session.add(consortium)
    db.session.commit()
    herning = make_library(db, consortium_id=consortium.id)
    viborg = make_library(db, slug="viborg", consortium_id=consortium.id)
    outside = make_library(db, slug="utrecht", language="nl")
    make_club(db, herning, slug="vip")
    make_club(db, viborg, slug="vip")
    other = make_club(db, outside, slug="vip")
    admin = make_user(db, None, Role.CONSORTIUM_ADMIN, consortium_id=consortium.id)
    api = Api(app.test_client(), bearer(db, admin))

    items = api.get("/api/libraries").get_json()["items"]
    assert {i["slug"] for i in items} == {"herning", "viborg"}
    clubs = api.get("/api/clubs").get_json()["items"]
    assert {c["library_id"] for c in clubs} == {herning.id, viborg.id}
    only = api.get(f"/api/clubs?library_id={viborg.id}").get_json()["items"]
    assert [c["library_id"] for c in only] == [viborg.id]
    assert api.get(f"/api/clubs/{other.id}").status_code == 404
    assert api.get(f"/api/clubs?library_id={outside.id}").status_code == 404

    body = {"name": "Debat", "slug": "debat", "from_name": "D", "from_email": "d@v.dk"}
    response = api("POST", "/api/clubs", body)
    assert response.status_code == 422
    assert error(response)["field"] == "library_id"
    response = api("POST", "/api/clubs", {**body, "library_id": viborg.id})
    assert response.status_code == 201
    assert response.get_json()["library_id"] == viborg.id
    response = api("POST", "/api/clubs", {**body, "library_id": outside.id})
    assert response.status_code == 404
    assert error(response)["field"] == "library_id"


# ---------------------------------------------------------------- clubs


CLUB = {
    "name": "Familieklubben",
    "slug": "familie",
    "description": "For børnefamilier",
    "language": "da",
    "from_name": "Familieklubben",
    "from_email": "familie@herning.example.dk",
}


def test_admin_creates_shows_changes_and_deletes_a_club(db, as_role, herning):
    api = as_role(Role.ADMIN)
    response = api("POST", "/api/clubs", {**CLUB, "double_opt_in": False})
    assert response.status_code == 201
    club = response.get_json()
    assert club["slug"] == "familie" and club["double_opt_in"] is False
    assert club["tracking_consent_required"] is True
    assert (
        club["consent_text_version"] == 1 and "Familieklubben" in club["consent_text"]
    )

    shown = api.get(f"/api/clubs/{club['id']}").get_json()
    assert shown == club
    listed = api.get("/api/clubs").get_json()["items"]
    assert {c["slug"] for c in listed} == {"debat", "familie"}

    response = api(
        "PATCH",
        f"/api/clubs/{club['id']}",
        {"name": "Familie", "reply_to": None, "consent_text": "Ja tak, ny tekst."},
    )
    assert response.status_code == 200
    changed = response.get_json()
    assert changed["name"] == "Familie" and changed["slug"] == "familie"
    assert changed["consent_text"] == "Ja tak, ny tekst."
    assert changed["consent_text_version"] == 2
    assert db.session.scalar(select(func.count()).select_from(ConsentText)) == 3

    assert api("DELETE", f"/api/clubs/{club['id']}").status_code == 204
    assert api.get(f"/api/clubs/{club['id']}").status_code == 404


def test_club_rules_name_the_field(as_role, herning):
    api = as_role(Role.ADMIN)
    cases = [
        ({**CLUB, "slug": "Not A Slug"}, 422, "slug"),
        ({**CLUB, "slug": "debat"}, 409, "slug"),
        ({**CLUB, "from_email": "nobody"}, 422, "from_email"),
        ({**CLUB, "language": "de"}, 422, "language"),
        ({**CLUB, "name": "   "}, 422, "name"),
        ({**CLUB, "name": "x" * 201}, 422, "name"),
        ({**CLUB, "double_opt_in": "yes"}, 422, "double_opt_in"),
        ({**CLUB, "colour": "red"}, 422, "colour"),
        ({k: v for k, v in CLUB.items() if k != "from_email"}, 422, "from_email"),
    ]
    for body, status, field in cases:
        response = api("POST", "/api/clubs", body)
        assert response.status_code == status, (body, response.get_json())
        assert error(response)["field"] == field
    assert len(api.get("/api/clubs").get_json()["items"]) == 1

    club_id = herning[1].id
    response = api("PATCH", f"/api/clubs/{club_id}", {})
    assert response.status_code == 422
    response = api("PATCH", f"/api/clubs/{club_id}", {"from_email": ""})
    assert response.status_code == 422 and error(response)["field"] == "from_email"
    assert api.get(f"/api/clubs/{club_id}").get_json()["from_email"]


def test_admin_chooses_how_a_club_tracks(db, as_role, herning):
    api = as_role(Role.ADMIN)
    club_id = herning[1].id
    assert api.get(f"/api/clubs/{club_id}").get_json()["tracking_mode"] == "individual"

    response = api(
        "PATCH",
        f"/api/clubs/{club_id}",
        {"tracking_mode": "anonymous", "tracking_consent_required": False},
    )
    assert response.status_code == 200
    assert response.get_json()["tracking_mode"] == "anonymous"
    assert response.get_json()["tracking_consent_required"] is False

    response = api("PATCH", f"/api/clubs/{club_id}", {"tracking_mode": "everything"})
    assert response.status_code == 422 and error(response)["field"] == "tracking_mode"
    shown = api.get(f"/api/clubs/{club_id}").get_json()
    assert shown["tracking_mode"] == "anonymous"

    response = api(
        "PATCH",
        f"/api/clubs/{club_id}",
        {"tracking_mode": "off", "public_archive": True},
    )
    assert response.status_code == 200
    assert response.get_json()["tracking_mode"] == "off"
    assert response.get_json()["public_archive"] is True
    db.session.expire_all()
    assert db.session.get(Club, club_id).tracking_mode is TrackingMode.OFF


# ---------------------------------------------------------------- roles


def test_staff_reads_but_changes_nothing(db, as_role, herning):
    library, club, _users = herning
    person = make_subscriber(db, library)
    membership = join_club(db.session, club, person, source="t", consent_given=True)
    db.session.commit()
    api = as_role(Role.STAFF)
    for url in (
        "/api/libraries",
        f"/api/libraries/{library.id}",
        "/api/clubs",
        f"/api/clubs/{club.id}",
        f"/api/clubs/{club.id}/members",
        "/api/subscribers",
        f"/api/subscribers/{person.id}",
        f"/api/subscribers/{person.id}/data",
        f"/api/memberships/{membership.id}",
    ):
        assert api.get(url).status_code == 200, url
    writes = [
        ("POST", "/api/clubs", CLUB),
        ("PATCH", f"/api/clubs/{club.id}", {"name": "X"}),
        ("DELETE", f"/api/clubs/{club.id}", None),
        ("POST", "/api/subscribers", {"email": "new@example.dk"}),
        ("PATCH", f"/api/subscribers/{person.id}", {"first_name": "X"}),
        ("DELETE", f"/api/subscribers/{person.id}", None),
        ("POST", f"/api/subscribers/{person.id}/erase", None),
        ("POST", f"/api/clubs/{club.id}/members", {"email": "new@example.dk"}),
        ("PATCH", f"/api/memberships/{membership.id}", {"status": "unsubscribed"}),
        ("DELETE", f"/api/memberships/{membership.id}", None),
        ("POST", f"/api/clubs/{club.id}/imports", {"records": [{"email": "a@b.dk"}]}),
    ]
    for method, url, body in writes:
        response = api(method, url, body)
        assert response.status_code == 403, (method, url)
        assert error(response)["code"] == "forbidden"
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 1
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED
    assert db.session.get(Club, club.id).name == "Her er debat"


def test_editor_manages_subscribers_but_not_clubs(as_role, herning):
    api = as_role(Role.EDITOR)
    assert api("POST", "/api/subscribers", {"email": "e@example.dk"}).status_code == 201
    for method, url, body in (
        ("POST", "/api/clubs", CLUB),
        ("PATCH", f"/api/clubs/{herning[1].id}", {"name": "X"}),
        ("DELETE", f"/api/clubs/{herning[1].id}", None),
    ):
        assert api(method, url, body).status_code == 403


# ---------------------------------------------------------------- subscribers


def test_editor_creates_changes_and_deletes_subscribers(as_role, herning):
    api = as_role(Role.EDITOR)
    response = api(
        "POST",
        "/api/subscribers",
        {
            "email": "Mette@Example.DK",
            "first_name": "Mette",
            "attributes": {"branch": "Lind", "children": 2},
        },
    )
    assert response.status_code == 201
    person = response.get_json()
    assert person["email"] == "Mette@example.dk" and person["language"] == "da"
    assert person["attributes"] == {"branch": "Lind", "children": "2"}
    assert person["memberships"] == []

    response = api("POST", "/api/subscribers", {"email": "mette@EXAMPLE.dk"})
    assert response.status_code == 409
    assert error(response) == {
        "code": "already_exists",
        "message": error(response)["message"],
        "field": "email",
    }

    url = f"/api/subscribers/{person['id']}"
    response = api("PATCH", url, {"last_name": "Holm", "language": "en"})
    assert response.status_code == 200
    assert response.get_json()["last_name"] == "Holm"
    assert api.get(url).get_json()["language"] == "en"
    assert api("DELETE", url).status_code == 204
    assert api.get(url).status_code == 404
    # Deleted, not erased: the address may be added again.
    assert (
        api("POST", "/api/subscribers", {"email": "mette@example.dk"}).status_code
        == 201
    )


def test_subscriber_fields_are_checked(db, as_role, herning):
    api = as_role(Role.EDITOR)
    make_subscriber(db, herning[0], "taken@example.dk")
    cases = [
        ({}, 422, "email"),
        ({"email": "not an address"}, 422, "email"),
        ({"email": 5}, 422, "email"),
        ({"email": "a@example.dk", "language": "xx"}, 422, "language"),
        ({"email": "a@example.dk", "first_name": "x" * 201}, 422, "first_name"),
        ({"email": "a@example.dk", "first_name": "a\nb"}, 422, "first_name"),
        ({"email": "a@example.dk", "attributes": ["x"]}, 422, "attributes"),
        ({"email": "a@example.dk", "attributes": {"k": {"x": 1}}}, 422, "attributes.k"),
        ({"email": "a@example.dk", "attributes": {"k": "v" * 501}}, 422, "attributes"),
        ({"email": "a@example.dk", "library_id": "1"}, 422, "library_id"),
        ({"email": "a@example.dk", "library_id": 10**30}, 422, "library_id"),
        ({"email": "a@example.dk", "library_id": 999}, 404, "library_id"),
        ({"email": "a@example.dk", "admin": True}, 422, "admin"),
    ]
    for body, status, field in cases:
        response = api("POST", "/api/subscribers", body)
        assert response.status_code == status, (body, response.get_json())
        assert error(response)["field"] == field, body
    taken = db.session.scalar(select(Subscriber))
    response = api("PATCH", f"/api/subscribers/{taken.id}", {"email": "bad"})
    assert response.status_code == 422 and error(response)["field"] == "email"
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_subscribers_are_searched_and_paged(db, as_role, herning):
    library = herning[0]
    for n in range(7):
        make_subscriber(db, library, f"person{n}@example.dk", first_name=f"P{n}")
    make_subscriber(db, library, "jens@example.dk", last_name="Hansen_Kjær")
    api = as_role(Role.STAFF)

    found = api.get("/api/subscribers?q=hansen_").get_json()["items"]
    assert [p["email"] for p in found] == ["jens@example.dk"]
    assert api.get("/api/subscribers?q=%25").get_json()["items"] == []

    seen, after = [], 0
    while True:
        page = api.get(f"/api/subscribers?limit=3&after={after}").get_json()
        seen += [p["email"] for p in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert len(seen) == 8 and len(set(seen)) == 8

    page2 = api.get("/api/subscribers?limit=3&page=2").get_json()
    assert page2["total"] == 8 and page2["pages"] == 3
    assert [p["email"] for p in page2["items"]] == seen[3:6]

    for query, field in (
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("limit=abc", "limit"),
        ("after=-1", "after"),
        ("page=0", "page"),
        ("library_id=x", "library_id"),
    ):
        response = api.get(f"/api/subscribers?{query}")
        assert response.status_code == 422, query
        assert error(response)["field"] == field


def test_erasing_keeps_only_a_hash_and_blocks_new_imports(db, as_role, herning):
    library, club, _users = herning
    person = make_subscriber(db, library, "gone@example.dk", first_name="Gone")
    join_club(db.session, club, person, source="t", consent_given=True)
    db.session.commit()
    api = as_role(Role.EDITOR)

    data = api.get(f"/api/subscribers/{person.id}/data").get_json()
    assert data["email"] == "gone@example.dk"
    assert data["memberships"][0]["consent"]["consent_text_version"] == 1

    assert api("POST", f"/api/subscribers/{person.id}/erase").status_code == 204
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 1
    response = api("POST", "/api/subscribers", {"email": "GONE@example.dk"})
    assert response.status_code == 409
    assert error(response)["code"] == "suppressed"


# ---------------------------------------------------------------- memberships


def test_member_added_unconfirmed_gets_the_confirmation_mail(
    smtp_app_config, app, client, db, herning, smtp_server
):
    _library, club, users = herning
    api = Api(app.test_client(), bearer(db, users[Role.EDITOR]))
    response = api(
        "POST",
        f"/api/clubs/{club.id}/members",
        {"email": "Mette@Example.DK", "first_name": "Mette", "tracking_consent": True},
    )
    assert response.status_code == 201
    member = response.get_json()
    assert member["status"] == "unconfirmed" and member["confirmation_sent"] is True
    assert member["tracking_consent"] is True
    assert member["consent"]["source"] == f"api:{users[Role.EDITOR].id}:confirm-by-mail"
    assert member["consent"]["consent_text_version"] == 1

    (mail,) = smtp_server.messages
    assert mail["To"] == "Mette@example.dk"
    assert confirm_from_mail(client, mail).status_code == 200
    shown = api.get(f"/api/memberships/{member['id']}").get_json()
    assert shown["status"] == "confirmed" and shown["consent"]["confirmed_at"]


def test_member_with_consent_given_is_confirmed_without_mail(db, as_role, herning):
    library, club, _users = herning
    known = make_subscriber(db, library, "known@example.dk")
    api = as_role(Role.EDITOR)
    response = api(
        "POST",
        f"/api/clubs/{club.id}/members",
        {"subscriber_id": known.id, "consent_given": True},
    )
    assert response.status_code == 201
    assert response.get_json()["status"] == "confirmed"
    assert response.get_json()["confirmation_sent"] is False
    assert outbox_messages(db) == []

    again = api("POST", f"/api/clubs/{club.id}/members", {"email": "KNOWN@example.dk"})
    assert again.status_code == 409 and error(again)["code"] == "already_exists"
    for body, status, field in (
        ({}, 422, "email"),
        ({"subscriber_id": known.id, "first_name": "X"}, 422, "first_name"),
        ({"subscriber_id": 999999}, 404, None),
        ({"email": "x@example.dk", "consent_given": "yes"}, 422, "consent_given"),
    ):
        response = api("POST", f"/api/clubs/{club.id}/members", body)
        assert response.status_code == status, body
        assert error(response)["field"] == field
    assert db.session.scalar(select(func.count()).select_from(Membership)) == 1


def test_members_are_listed_by_status_and_changed(db, as_role, herning):
    library, club, _users = herning
    for n in range(3):
        person = make_subscriber(db, library, f"c{n}@example.dk")
        join_club(db.session, club, person, source="t", consent_given=True)
    waiting = make_subscriber(db, library, "waiting@example.dk", first_name="Vent")
    pending = join_club(db.session, club, waiting, source="t")
    db.session.commit()
    api = as_role(Role.EDITOR)

    url = f"/api/clubs/{club.id}/members"
    assert len(api.get(url).get_json()["items"]) == 4
    unconfirmed = api.get(f"{url}?status=unconfirmed").get_json()["items"]
    assert [m["email"] for m in unconfirmed] == ["waiting@example.dk"]
    assert [m["first_name"] for m in api.get(f"{url}?q=vent").get_json()["items"]] == [
        "Vent"
    ]
    page = api.get(f"{url}?limit=2").get_json()
    assert len(page["items"]) == 2 and page["next_after"] == page["items"][1]["id"]
    response = api.get(f"{url}?status=lost")
    assert response.status_code == 422 and error(response)["field"] == "status"

    m_url = f"/api/memberships/{pending.id}"
    response = api("PATCH", m_url, {"status": "bounced"})
    assert response.status_code == 409
    assert error(response) | {"message": ""} == {
        "code": "invalid_transition",
        "message": "",
        "field": "status",
    }
    response = api("PATCH", m_url, {"status": "gone"})
    assert response.status_code == 422 and error(response)["field"] == "status"
    # Tracking consent is the person's to give: staff cannot switch it on.
    response = api("PATCH", m_url, {"status": "unsubscribed", "tracking_consent": True})
    assert response.status_code == 422
    assert error(response)["field"] == "tracking_consent"
    response = api("PATCH", m_url, {"status": "unsubscribed"})
    assert response.status_code == 200
    changed = response.get_json()
    assert changed["status"] == "unsubscribed" and changed["tracking_consent"] is False
    assert changed["consent"]["unsubscribed_at"]

    # Back to unconfirmed needs fresh consent: the confirmation mail goes again.
    response = api("PATCH", m_url, {"status": "unconfirmed"})
    assert response.get_json()["confirmation_sent"] is True
    assert len(outbox_messages(db)) == 1

    assert api("DELETE", m_url).status_code == 204
    assert api.get(m_url).status_code == 404
    assert db.session.get(Subscriber, waiting.id) is not None


# ---------------------------------------------------------------- imports


def test_import_reports_every_row(db, as_role, herning):
    library, club, _users = herning
    member = make_subscriber(db, library, "member@example.dk")
    join_club(db.session, club, member, source="t", consent_given=True)
    db.session.commit()
    api = as_role(Role.EDITOR)
    records = [
        {"email": "new@example.dk", "first_name": "Ny", "tracking_consent": True},
        {"email": "not an address"},
        {"email": "NEW@example.dk"},
        {"email": "member@example.dk"},
        {"email": "x@example.dk", "language": "xx"},
        "just a string",
        {"email": 7},
        {"email": "y@example.dk", "shoe_size": 44},
        {"email": "kid@example.dk", "attributes": {"ages": "4, 7"}},
    ]
    response = api(
        "POST",
        f"/api/clubs/{club.id}/imports",
        {"records": records, "consent_given": True},
    )
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert job["status"] == "done" and job["total_rows"] == 9
    assert job["counts"] == {
        "imported": 2,
        "invalid_email": 1,
        "duplicate": 1,
        "already_member": 1,
        "invalid_row": 4,
    }
    by_row = {i["row"]: i for i in job["issues"]}
    assert sorted(by_row) == [2, 3, 4, 5, 6, 7, 8]
    assert by_row[8]["outcome"] == "invalid_row" and "shoe_size" in by_row[8]["message"]
    assert outbox_messages(db) == []

    shown = api.get(f"/api/imports/{job['id']}").get_json()
    assert shown["counts"] == job["counts"] and len(shown["issues"]) == 7
    assert len(api.get(f"/api/imports/{job['id']}?limit=2").get_json()["issues"]) == 2
    kid = db.session.scalar(
        select(Subscriber).where(Subscriber.email_key == "kid@example.dk")
    )
    assert kid.attributes == {"ages": "4, 7"}
    assert kid.memberships[0].status == MembershipStatus.CONFIRMED


def test_import_without_consent_sends_confirmation_mails_in_batches(
    app, client, db, as_role, herning
):
    from scheduler import tick
    from subscribers.mails import queue_import_confirmations

    club = herning[1]
    api = as_role(Role.EDITOR)
    records = [{"email": f"p{n}@example.dk"} for n in range(3)]
    response = api("POST", f"/api/clubs/{club.id}/imports", {"records": records})
    assert response.status_code == 201
    job = response.get_json()
    assert job["counts"] == {"imported": 3, "mails_pending": 3}
    statuses = db.session.scalars(select(Membership.status)).all()
    assert statuses == [MembershipStatus.UNCONFIRMED] * 3

    assert queue_import_confirmations(db.session, limit=2) == 2
    # Someone confirmed meanwhile (e.g. through an earlier mail): no mail for them.
    last = db.session.scalars(select(Membership).order_by(Membership.id.desc())).first()
    last.status = MembershipStatus.CONFIRMED
    db.session.commit()
    assert queue_import_confirmations(db.session, limit=2) == 0
    assert queue_import_confirmations(db.session, limit=2) == 0
    counts = api.get(f"/api/imports/{job['id']}").get_json()["counts"]
    assert counts["mails_pending"] == 0
    assert counts["mails_queued"] == 2
    recipients = db.session.scalars(select(QueuedMail.recipient)).all()
    assert sorted(recipients) == ["p0@example.dk", "p1@example.dk"]

    tick(app)  # the scheduler sends what is queued
    mails = outbox_messages(db)
    assert sorted(m["To"] for m in mails) == ["p0@example.dk", "p1@example.dk"]
    assert confirm_from_mail(client, mails[0]).status_code == 200
    confirmed = db.session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.status == MembershipStatus.CONFIRMED)
    )
    assert confirmed == 2


def test_the_scheduler_queues_import_confirmations(app, db, as_role, herning):
    from scheduler import tick

    api = as_role(Role.EDITOR)
    records = [{"email": "late@example.dk"}]
    api("POST", f"/api/clubs/{herning[1].id}/imports", {"records": records})
    tick(app)
    tick(app)
    assert [m["To"] for m in outbox_messages(db)] == ["late@example.dk"]


def test_import_request_limits(db, as_role, herning):
    club = herning[1]
    api = as_role(Role.EDITOR)
    url = f"/api/clubs/{club.id}/imports"
    too_many = {"records": [{"email": f"p{n}@x.dk"} for n in range(10_001)]}
    response = api("POST", url, too_many)
    assert response.status_code == 413
    assert error(response) | {"message": ""} == {
        "code": "too_many_records",
        "message": "",
        "field": "records",
    }
    for body, field in (
        ({"records": []}, "records"),
        ({"records": "a@b.dk"}, "records"),
        ({}, "records"),
        ({"records": [{"email": "a@b.dk"}], "consent_given": 1}, "consent_given"),
    ):
        response = api("POST", url, body)
        assert response.status_code == 422, body
        assert error(response)["field"] == field
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert db.session.scalar(select(func.count()).select_from(ImportIssue)) == 0


# ---------------------------------------------------------------- bad input


def test_bad_bodies_get_clear_errors_and_change_nothing(app, db, as_role, herning):
    api = as_role(Role.ADMIN)
    url = "/api/subscribers"
    cases = [
        (
            dict(data="{not json", content_type="application/json"),
            400,
            "malformed_json",
        ),
        (
            dict(data=b"\xff\xfe\x00", content_type="application/json"),
            400,
            "malformed_json",
        ),
        (
            dict(data="[" * 100_000, content_type="application/json"),
            400,
            "malformed_json",
        ),
        (dict(data="", content_type="application/json"), 400, "malformed_json"),
        (
            dict(data="email=a@b.dk", content_type="application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
        ),
        (
            dict(data='{"email": "a@b.dk"}', content_type="text/plain"),
            415,
            "unsupported_media_type",
        ),
        (dict(data='{"email": "a@b.dk"}'), 415, "unsupported_media_type"),
        (dict(data='["a@b.dk"]', content_type="application/json"), 422, "invalid"),
        (dict(data="null", content_type="application/json"), 422, "invalid"),
    ]
    for kw, status, code in cases:
        response = api("POST", url, **kw)
        assert response.status_code == status, (
            kw,
            response.get_data(as_text=True)[:200],
        )
        assert error(response)["code"] == code

    app.config["API_MAX_BODY_BYTES"] = 1000
    huge = {"email": "a@b.dk", "first_name": "x" * 2000}
    response = api("POST", url, huge)
    assert response.status_code == 413 and error(response)["code"] == "too_large"
    # Sent in chunks, without a Content-Length, as a streaming client does.
    response = api(
        "POST",
        url,
        input_stream=io.BytesIO(json.dumps(huge).encode()),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413 and error(response)["code"] == "too_large"
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_unknown_ids_and_routes_are_json_404s(as_role):
    api = as_role(Role.ADMIN)
    for url in (
        "/api/clubs/999",
        "/api/clubs/99999999999999999999999",
        "/api/subscribers/0",
        "/api/memberships/123",
        "/api/imports/5",
        "/api/libraries/7",
        "/api/clubs/999/members",
        "/api/nothing-here",
    ):
        response = api.get(url)
        assert response.status_code == 404, url
        assert error(response)["code"] == "not_found"
    response = api("PUT", "/api/clubs", {"name": "x"})
    assert response.status_code == 405 and error(response)


# ---------------------------------------------------------------- isolation


@pytest.fixture
def library_b(db):
    """Library B with one of everything; the ids to put into API URLs."""
    library = make_library(db, slug="utrecht", language="nl")
    club = make_club(db, library, slug="debat", name="Debatclub")
    person = make_subscriber(db, library, "geheim@example.nl", first_name="Geheim")
    membership = join_club(db.session, club, person, source="t", consent_given=True)
    user = make_user(db, library, Role.EDITOR)
    event = create_event(
        db.session, library, {"title": "Geheim", "starts_at": "2026-12-01T19:00"}
    )
    template = Template(
        library_id=library.id,
        name="B",
        kind="regular",
        language="nl",
        source="<mjml></mjml>",
    )
    db.session.add(template)
    db.session.flush()
    campaign = create_campaign(
        db.session, club, user, {"kind": "regular", "subject": "Geheim"}
    )
    db.session.commit()
    api_b = Api(None, bearer(db, user))
    return {
        "library_id": library.id,
        "club_id": club.id,
        "subscriber_id": person.id,
        "membership_id": membership.id,
        "event_id": event.id,
        "template_id": template.id,
        "campaign_id": campaign.id,
        "headers": api_b.headers,
    }


def test_every_api_url_with_another_librarys_ids_is_404(app, db, as_role, library_b):
    api_b = Api(app.test_client(), library_b.pop("headers"))
    job = api_b(
        "POST",
        f"/api/clubs/{library_b['club_id']}/imports",
        {"records": [{"email": "b@example.nl"}], "consent_given": True},
    ).get_json()
    ids = {**library_b, "job_id": job["id"]}
    api = as_role(Role.ADMIN)
    body = {"name": "Overtaken", "email": "x@example.dk", "status": "unsubscribed"}
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or not rule.arguments:
            continue
        missing = set(rule.arguments) - set(ids)
        assert not missing, f"{rule.rule}: no object of library B for {missing}"
        url = rule.build(ids, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = api(method, url, body if method in ("POST", "PATCH") else None)
            assert response.status_code == 404, f"{method} {url}"
            assert error(response)["code"] == "not_found"
            checked += 1
    assert checked >= 15

    club = db.session.get(Club, ids["club_id"])
    assert club.name == "Debatclub"
    assert db.session.get(Subscriber, ids["subscriber_id"]).first_name == "Geheim"
    assert db.session.get(Membership, ids["membership_id"]).status == "confirmed"
    assert db.session.scalar(select(func.count()).select_from(Membership)) == 2


def test_lists_show_only_the_own_library(as_role, library_b):
    api = as_role(Role.ADMIN)
    assert [c["name"] for c in api.get("/api/clubs").get_json()["items"]] == [
        "Her er debat"
    ]
    assert api.get("/api/subscribers?q=geheim").get_json()["items"] == []
    response = api.get(f"/api/subscribers?library_id={library_b['library_id']}")
    assert response.status_code == 404


def test_a_subscriber_of_another_library_cannot_join_my_club(
    as_role, herning, library_b
):
    api = as_role(Role.EDITOR)
    response = api(
        "POST",
        f"/api/clubs/{herning[1].id}/members",
        {"subscriber_id": library_b["subscriber_id"]},
    )
    assert response.status_code == 404


# ---------------------------------------------------------------- the description


def test_openapi_document_matches_the_routes_and_is_valid(app, client):
    from openapi_spec_validator import validate

    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)

    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<int:", "{").replace(">", "}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((path, method.lower()))
    http_methods = {"get", "post", "put", "patch", "delete"}
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in http_methods  # path items may also carry "parameters"
    }
    assert served == documented
    assert len(served) >= 20
    for path, method in documented:
        operation = document["paths"][path][method]
        assert operation["summary"] and operation["responses"]
        # Actions (erase, pause...) take no fields; every other write has a body.
        actions = ("/erase", "/unschedule", "/pause", "/resume", "/cancel")
        if method in ("post", "patch") and not path.endswith(actions):
            assert "requestBody" in operation, (method, path)


def test_docs_describe_every_endpoint(app):
    from pathlib import Path

    from klubpost.openapi import api_operations

    docs = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    for path, method in api_operations(app):
        assert f"`{method.upper()} {path}`" in docs, (method, path)


ODD_VALUES = [
    None,
    True,
    2**31,
    1.5,
    "",
    "x" * 10_000,
    "a\x00b",
    "Ünïcødé@exämple.dk",
    [],
    {"a": [1]},
    {"k": "a\x00b"},
]


def test_no_field_value_makes_a_server_error(app, db, as_role, herning):
    """Every body field of every endpoint, filled with odd values: 2xx or 4xx."""
    from klubpost.openapi import SCHEMAS, api_operations

    library, club, _users = herning
    person = make_subscriber(db, library, "fuzz@example.dk")
    membership = join_club(db.session, club, person, source="t")
    db.session.commit()
    ids = {
        "{club_id}": club.id,
        "{subscriber_id}": person.id,
        "{membership_id}": membership.id,
    }
    api = as_role(Role.ADMIN)
    sent = 0
    for (path, method), operation in api_operations(app).items():
        if "requestBody" not in operation:
            continue
        url = path
        for name, value in ids.items():
            url = url.replace(name, str(value))
        ref = operation["requestBody"]["content"]["application/json"]["schema"]
        schema = SCHEMAS[ref["$ref"].rsplit("/", 1)[1]]
        for field in schema["properties"]:
            for value in ODD_VALUES:
                body = {field: value}
                if field != "records" and path.endswith("/imports"):
                    body = {"records": [{field: value, "email": "r@example.dk"}]}
                response = api(method.upper(), url, body)
                assert response.status_code < 500, (method, url, body)
                if response.status_code >= 400:
                    assert error(response)
                sent += 1
    assert sent > 300


def test_international_addresses_get_working_mail_headers(db, as_role, herning):
    club = herning[1]
    api = as_role(Role.EDITOR)
    response = api("POST", f"/api/clubs/{club.id}/members", {"email": "anna@blåbær.dk"})
    assert response.status_code == 201
    assert response.get_json()["email"] == "anna@blåbær.dk"
    (mail,) = outbox_messages(db)
    assert mail["To"].addresses[0].addr_spec == "anna@xn--blbr-roah.dk"
    # The part before the @ must be ASCII: our mail goes out without SMTPUTF8.
    response = api("POST", f"/api/clubs/{club.id}/members", {"email": "jørn@x.dk"})
    assert response.status_code == 422 and error(response)["field"] == "email"


def test_answers_match_the_documented_schemas(app, db, as_role, herning):
    from jsonschema import Draft202012Validator

    library, club, _users = herning
    person = make_subscriber(db, library, "doc@example.dk", attributes={"a": "b"})
    membership = join_club(db.session, club, person, source="t")
    db.session.commit()
    api = as_role(Role.ADMIN)
    job = api(
        "POST",
        f"/api/clubs/{club.id}/imports",
        {"records": [{"email": "x@example.dk"}, {"email": "bad"}]},
    ).get_json()
    ids = {
        "{library_id}": library.id,
        "{club_id}": club.id,
        "{subscriber_id}": person.id,
        "{membership_id}": membership.id,
        "{job_id}": job["id"],
        "{event_id}": create_event(
            db.session, library, {"title": "Debat", "starts_at": "2026-12-01T19:00"}
        ).id,
        "{campaign_id}": create_campaign(
            db.session, club, None, {"kind": "regular", "subject": "Nyt"}
        ).id,
    }
    db.session.commit()
    document = api.get("/api/openapi.json").get_json()
    checked = 0
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None or path.endswith("openapi.json"):
            continue
        url = path
        for name, value in ids.items():
            url = url.replace(name, str(value))
        response = api.get(url)
        assert response.status_code == 200, url
        schema = operation["responses"]["200"]["content"]["application/json"]
        validator = Draft202012Validator(
            {**schema["schema"], "components": document["components"]}
        )
        problems = [e.message for e in validator.iter_errors(response.get_json())]
        assert not problems, (url, problems)
        checked += 1
    assert checked == 20
    bad = api("POST", "/api/clubs", {"name": 1})
    error_schema = {"$ref": "#/components/schemas/Error", **document}
    assert not list(Draft202012Validator(error_schema).iter_errors(bad.get_json()))


def test_no_query_parameter_makes_a_server_error(app, db, as_role, herning):
    from klubpost.openapi import api_operations

    library, club, _users = herning
    make_subscriber(db, library, "q@example.dk")
    api = as_role(Role.STAFF)
    odd = ["", "\x00", "%", "_", "\\", "x" * 5000, "-1", "1e9", "99999999999999999999"]
    for (path, method), operation in api_operations(app).items():
        if method != "get" or "{" in path.replace("{club_id}", ""):
            continue
        url = path.replace("{club_id}", str(club.id))
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            for value in odd:
                response = api.get(url, query_string={parameter["name"]: value})
                assert response.status_code in (200, 404, 422), (url, value)
