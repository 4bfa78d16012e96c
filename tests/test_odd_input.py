"""Odd values that once reached the database or the mail library: each is a
clear 4xx naming the problem, and nothing changes."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from accounts.models import Role
from accounts.services import issue_token
from campaigns.models import Campaign, Event
from conftest import csrf_token, login, make_club, make_library, make_user, submit_form

HUGE = "99999999999999999999"  # more than any database integer


@pytest.fixture
def editor(client, db):
    library = make_library(db)
    club = make_club(db, library)
    user = make_user(db, library, Role.EDITOR)
    _token, clear = issue_token(db.session, user, "test")
    db.session.commit()
    login(client, user)
    return club, {"Authorization": f"Bearer {clear}"}


def _campaign(client, club, headers, **fields) -> dict:
    body = {"kind": "regular", "subject": "Nyt fra klubben", **fields}
    response = client.post(
        f"/api/clubs/{club.id}/campaigns", json=body, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_ids_too_large_for_the_database_are_404_or_name_the_field(client, db, editor):
    club, headers = editor
    for path in (
        f"/clubs/{HUGE}",
        f"/clubs/{HUGE}/edit",
        f"/templates/{HUGE}",
        f"/campaigns/{HUGE}",
        f"/clubs/{club.id}/imports/{HUGE}",
    ):
        assert client.get(path).status_code == 404, path
    token = csrf_token(client, "/account/tokens")
    response = client.post(f"/memberships/{HUGE}", data={"csrf_token": token})
    assert response.status_code == 404
    response = client.post(f"/account/tokens/{HUGE}/revoke", data={"csrf_token": token})
    assert response.status_code == 404

    for fields, field in (
        ({"template": f"template:{HUGE}"}, "template"),
        ({"event_id": int(HUGE)}, "event_id"),
        ({"blocks": [{"type": "event", "event_id": 2**70}]}, "blocks"),
    ):
        response = client.post(
            f"/api/clubs/{club.id}/campaigns",
            json={"kind": "regular", "subject": "x", **fields},
            headers=headers,
        )
        assert response.status_code == 422, (fields, response.get_json())
        assert response.get_json()["error"]["field"].startswith(field)
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 0

    campaign = _campaign(client, club, headers)
    preview = f"/api/campaigns/{campaign['id']}/preview"
    response = client.post(preview, json={"subscriber_id": 2**70}, headers=headers)
    assert response.status_code in (404, 422)
    source = f"/campaigns/{campaign['id']}/template-source?template=template:{HUGE}"
    assert client.get(source).status_code < 500


def test_a_page_number_beyond_any_list_is_an_empty_page(client, editor):
    club, _headers = editor
    response = client.get(f"/clubs/{club.id}?page={HUGE}")
    assert response.status_code == 200


def test_dates_out_of_range_name_the_field(client, db, editor):
    club, headers = editor
    for when in (
        "0001-01-01T00:00",
        "0001-01-01T00:30+05:00",
        "9999-12-31T23:59-05:00",
    ):
        response = client.post(
            "/api/events", json={"title": "Debat", "starts_at": when}, headers=headers
        )
        assert response.status_code == 422, when
        assert response.get_json()["error"]["field"] == "starts_at"
    assert db.session.scalar(select(func.count()).select_from(Event)) == 0

    campaign = _campaign(client, club, headers)
    response = client.post(
        f"/api/campaigns/{campaign['id']}/schedule",
        json={"mode": "fixed", "send_at": "0001-01-01T00:00:00+01:00"},
        headers=headers,
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "send_at"

    page = f"/campaigns/{campaign['id']}"
    response = submit_form(
        client,
        f"{page}/schedule",
        {
            "mode": "fixed",
            "send_at": "0001-01-01T00:00",
        },
        page=page,
    )
    assert response.status_code == 400
    assert "2000" in response.get_data(as_text=True)
    response = submit_form(
        client,
        "/events/new",
        {
            "title": "Debat",
            "starts_at": "9999-12-31T23:59",
        },
    )
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_a_subject_stays_on_one_line(client, db, editor):
    club, headers = editor
    for subject in ("a\r\nBcc: evil@example.dk", "a\nb", "a\u2028b", "tab\there"):
        response = client.post(
            f"/api/clubs/{club.id}/campaigns",
            json={"kind": "regular", "subject": subject},
            headers=headers,
        )
        assert response.status_code == 422, subject
        assert response.get_json()["error"]["field"] == "subject"
    campaign = _campaign(client, club, headers, subject="Nyt\u00a0fra klubben")
    response = client.patch(
        f"/api/campaigns/{campaign['id']}",
        json={"preheader": "line\r\nbreak", "version": campaign["version"]},
        headers=headers,
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "preheader"
    db.session.expire_all()
    assert db.session.get(Campaign, campaign["id"]).preheader == ""


def test_a_library_filter_that_is_no_id_is_named(client, editor):
    _club, headers = editor
    for value in ("abc", HUGE, "-1"):
        response = client.get(f"/api/events?library_id={value}", headers=headers)
        assert response.status_code == 422, value
        assert response.get_json()["error"]["field"] == "library_id"
