"""The JSON API for events, campaigns, previews and test sends."""

import pytest

from accounts.models import Consortium, Role
from accounts.services import issue_token
from conftest import make_club, make_library, make_user


def _headers(db, user):
    _token, clear = issue_token(db.session, user, "test")
    db.session.commit()
    return {"Authorization": f"Bearer {clear}"}


@pytest.fixture
def api(client, db):
    library = make_library(db)
    club = make_club(db, library)
    editor = _headers(db, make_user(db, library, Role.EDITOR))
    staff = _headers(db, make_user(db, library, Role.STAFF))
    return client, library, club, editor, staff


def _event(client, headers, **fields):
    body = {"title": "Debataften", "starts_at": "2026-12-03T19:30", **fields}
    return client.post("/api/events", json=body, headers=headers)


def test_events_crud_in_the_librarys_time_zone(api):
    client, _library, club, editor, staff = api
    response = _event(client, editor, club_ids=[club.id], venue="Salen")
    assert response.status_code == 201
    event = response.get_json()
    assert event["starts_at"] == "2026-12-03T19:30:00+01:00"
    assert event["timezone"] == "Europe/Copenhagen" and event["club_ids"] == [club.id]
    # An explicit offset is taken as given.
    other = _event(client, editor, starts_at="2026-07-01T18:00:00+00:00").get_json()
    assert other["starts_at"] == "2026-07-01T20:00:00+02:00"

    listed = client.get("/api/events", headers=staff).get_json()["items"]
    assert [e["title"] for e in listed] == ["Debataften", "Debataften"]
    materials = [{"label": "Slides", "url": "https://x.dk/s.pdf", "tag": "slides"}]
    patched = client.patch(
        f"/api/events/{event['id']}", json={"materials": materials}, headers=editor
    )
    assert patched.status_code == 200
    assert patched.get_json()["materials"] == materials
    assert patched.get_json()["venue"] == "Salen"
    assert client.get(f"/api/events/{event['id']}", headers=staff).status_code == 200
    assert (
        client.delete(f"/api/events/{event['id']}", headers=editor).status_code == 204
    )
    assert client.get(f"/api/events/{event['id']}", headers=staff).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"starts_at": "soon"}, "starts_at"),
        ({"starts_at": "2026-03-29T02:30"}, "starts_at"),
        ({"ticket_url": "javascript:x"}, "ticket_url"),
        ({"club_ids": ["x"]}, "club_ids"),
        ({"materials": [{"label": "x"}]}, "materials"),
        ({"colour": "red"}, "colour"),
        ({"title": ""}, "title"),
    ],
)
def test_bad_events_are_422_naming_the_field(api, fields, field):
    client, _library, _club, editor, _staff = api
    response = _event(client, editor, **fields)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field
    assert client.get("/api/events", headers=editor).get_json()["items"] == []


def test_api_needs_a_token_json_and_the_editor_role(api):
    client, _library, _club, editor, staff = api
    assert client.get("/api/events").status_code == 401
    bad_token = {"Authorization": "Bearer kp_nope"}
    assert client.get("/api/events", headers=bad_token).status_code == 401
    assert _event(client, staff).status_code == 403
    as_text = {**editor, "Content-Type": "text/plain"}
    response = client.post("/api/events", data="title=x", headers=as_text)
    assert response.status_code == 415
    as_json = {**editor, "Content-Type": "application/json"}
    response = client.post("/api/events", data="[1,", headers=as_json)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_json"


def test_campaign_crud_with_optimistic_locking(api):
    client, _library, club, editor, staff = api
    event = _event(client, editor).get_json()
    url = f"/api/clubs/{club.id}/campaigns"
    response = client.post(
        url,
        json={"kind": "before_event", "event_id": event["id"], "subject": "Kom"},
        headers=editor,
    )
    assert response.status_code == 201
    campaign = response.get_json()
    assert campaign["template"] == "builtin:before_event-da"
    assert campaign["version"] == 1 and campaign["status"] == "draft"
    assert [c["id"] for c in client.get(url, headers=staff).get_json()["items"]] == [
        campaign["id"]
    ]

    one = f"/api/campaigns/{campaign['id']}"
    blocks = [{"type": "text", "heading": "Hej", "text": "Velkommen"}]
    first = client.patch(one, json={"blocks": blocks, "version": 1}, headers=editor)
    assert first.status_code == 200 and first.get_json()["version"] == 2
    stale = client.patch(one, json={"subject": "Gammel", "version": 1}, headers=editor)
    assert stale.status_code == 409
    assert stale.get_json()["current"]["blocks"] == blocks
    assert client.get(one, headers=staff).get_json()["subject"] == "Kom"
    missing = client.patch(one, json={"subject": "x"}, headers=editor)
    assert missing.status_code == 422
    assert missing.get_json()["error"]["field"] == "version"

    preview = client.post(f"{one}/preview", json={}, headers=staff)
    assert preview.status_code == 200
    body = preview.get_json()
    assert "Velkommen" in body["html"] and "Velkommen" in body["text"]
    assert isinstance(body["warnings"], list)
    changed = client.post(f"{one}/preview", json={"subject": "Nyt"}, headers=staff)
    assert changed.get_json()["subject"] == "Nyt"

    assert client.delete(one, headers=staff).status_code == 403
    assert client.delete(one, headers=editor).status_code == 204
    assert client.get(one, headers=editor).status_code == 404


def test_preview_reports_the_line_of_a_template_error(api):
    client, _library, club, editor, _staff = api
    campaign = client.post(
        f"/api/clubs/{club.id}/campaigns", json={"kind": "regular"}, headers=editor
    ).get_json()
    response = client.post(
        f"/api/campaigns/{campaign['id']}/preview",
        json={"custom_mjml": "<mjml>\n<mj-body>\n{{ x( }}\n</mj-body></mjml>"},
        headers=editor,
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "render_error" and error["line"] == 3


def test_test_send_over_the_api_reaches_the_smtp_server(
    smtp_app_config, smtp_server, api
):
    client, _library, club, editor, _staff = api
    campaign = client.post(
        f"/api/clubs/{club.id}/campaigns",
        json={
            "kind": "regular",
            "subject": "Nyt fra klubben",
            "blocks": [{"type": "text", "text": "Hej alle"}],
        },
        headers=editor,
    ).get_json()
    url = f"/api/campaigns/{campaign['id']}/test-send"
    bad = client.post(url, json={"addresses": ["nope"]}, headers=editor)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "addresses"
    response = client.post(url, json={"addresses": ["a@example.dk"]}, headers=editor)
    assert response.status_code == 200
    assert response.get_json() == {"sent": ["a@example.dk"], "queued": []}
    (message,) = smtp_server.messages
    assert message["Subject"] == "[TEST] Nyt fra klubben"
    assert "Hej alle" in message.get_body(("plain",)).get_content()


def test_another_librarys_objects_are_404(api, db):
    client, _library, _club, editor, _staff = api
    other = make_library(db, slug="utrecht", language="nl")
    other_club = make_club(db, other)
    other_editor = _headers(db, make_user(db, other, Role.EDITOR))
    event = _event(client, other_editor).get_json()
    campaign = client.post(
        f"/api/clubs/{other_club.id}/campaigns",
        json={"kind": "regular"},
        headers=other_editor,
    ).get_json()
    for method, url in [
        ("get", f"/api/events/{event['id']}"),
        ("patch", f"/api/events/{event['id']}"),
        ("delete", f"/api/events/{event['id']}"),
        ("get", f"/api/clubs/{other_club.id}/campaigns"),
        ("post", f"/api/clubs/{other_club.id}/campaigns"),
        ("get", f"/api/campaigns/{campaign['id']}"),
        ("patch", f"/api/campaigns/{campaign['id']}"),
        ("delete", f"/api/campaigns/{campaign['id']}"),
        ("post", f"/api/campaigns/{campaign['id']}/preview"),
        ("post", f"/api/campaigns/{campaign['id']}/test-send"),
    ]:
        response = getattr(client, method)(
            url, json={"kind": "regular", "version": 1}, headers=editor
        )
        assert response.status_code == 404, (method, url)
    assert client.get("/api/events", headers=editor).get_json()["items"] == []
    response = _event(client, editor, library_id=other.id)
    assert response.status_code == 404
    assert (
        client.get(f"/api/events/{event['id']}", headers=other_editor).status_code
        == 200
    )


def test_consortium_admin_names_the_library(client, db):
    consortium = Consortium(name="Nord", slug="nord")
    db.session.add(consortium)
    db.session.commit()
    one = make_library(db, consortium_id=consortium.id)
    make_library(db, slug="lind", consortium_id=consortium.id)
    admin = _headers(
        db, make_user(db, None, Role.CONSORTIUM_ADMIN, consortium_id=consortium.id)
    )
    response = _event(client, admin)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "library_id"
    response = _event(client, admin, library_id=one.id)
    assert response.status_code == 201 and response.get_json()["library_id"] == one.id
    templates = client.get(f"/api/templates?library_id={one.id}", headers=admin)
    refs = [t["template"] for t in templates.get_json()["items"]]
    assert "builtin:regular-da" in refs


@pytest.mark.parametrize("odd", ["²", "١٢", "٣"])
def test_digits_of_other_scripts_are_a_clear_error_not_a_crash(api, odd):
    client, _library, club, editor, _staff = api
    listed = client.get(f"/api/subscribers?limit={odd}", headers=editor)
    assert listed.status_code == 422 and listed.get_json()["error"]["field"] == "limit"
    campaign = client.post(
        f"/api/clubs/{club.id}/campaigns", json={"kind": "regular"}, headers=editor
    ).get_json()
    url = f"/api/campaigns/{campaign['id']}"
    for body in (
        {"subscriber_id": odd},
        {"template": f"template:{odd}"},
        {"blocks": [{"type": "event", "event_id": odd}]},
    ):
        response = client.post(f"{url}/preview", json=body, headers=editor)
        assert response.status_code == 422, (body, response.get_json())
