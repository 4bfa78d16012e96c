"""Events: recorded in the library's time zone, stored in UTC, with materials."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from accounts.models import Role
from campaigns import services
from campaigns.models import Event
from conftest import csrf_token, login, make_club, make_library, make_user


def _form(client, **fields):
    data = {
        "title": "Forfatteraften",
        "description": "Mød forfatteren.",
        "starts_at": "2026-12-03T19:30",
        "ends_at": "2026-12-03T21:00",
        "venue": "Hovedbiblioteket",
        "image_url": "",
        "ticket_url": "https://billet.example.dk/42",
        "materials": "",
        "csrf_token": csrf_token(client, "/events/new"),
    }
    data.update(fields)
    return data


@pytest.fixture
def editor(client, db):
    library = make_library(db, timezone="Europe/Copenhagen")
    club = make_club(db, library)
    login(client, make_user(db, library, Role.EDITOR))
    return library, club


def test_editor_records_event_in_library_time_and_it_is_stored_in_utc(
    client, db, editor
):
    _library, club = editor
    response = client.post("/events/new", data=_form(client, club_ids=[str(club.id)]))
    assert response.status_code == 302
    event = db.session.scalar(select(Event))
    # Copenhagen is UTC+1 in December.
    assert event.starts_at == datetime(2026, 12, 3, 18, 30, tzinfo=UTC)
    assert event.ends_at == datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    assert [c.id for c in event.clubs] == [club.id]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "2026-12-03 19:30" in page and "Her er debat" in page
    listing = client.get("/events").get_data(as_text=True)
    assert "Forfatteraften" in listing and "2026-12-03 19:30" in listing


def test_summer_time_is_two_hours_ahead_of_utc(client, db, editor):
    client.post(
        "/events/new", data=_form(client, starts_at="2026-06-10T19:30", ends_at="")
    )
    event = db.session.scalar(select(Event))
    assert event.starts_at == datetime(2026, 6, 10, 17, 30, tzinfo=UTC)
    assert event.ends_at is None


def test_amsterdam_library_enters_amsterdam_time(client, db):
    library = make_library(
        db, slug="utrecht", language="nl", timezone="Europe/Amsterdam"
    )
    login(client, make_user(db, library, Role.EDITOR))
    client.post("/events/new", data=_form(client, starts_at="2026-03-29T12:00"))
    # The day clocks go forward: 12:00 CEST is 10:00 UTC.
    assert db.session.scalar(select(Event.starts_at)) == datetime(
        2026, 3, 29, 10, 0, tzinfo=UTC
    )


def test_a_time_in_the_spring_gap_is_refused_and_nothing_saved(client, db, editor):
    response = client.post(
        "/events/new", data=_form(client, starts_at="2026-03-29T02:30", ends_at="")
    )
    assert response.status_code == 400
    assert "does not exist" in response.get_data(as_text=True)
    assert db.session.scalar(select(Event)) is None


def test_the_doubled_autumn_hour_means_the_first_one():
    utc = services.local_to_utc(datetime(2026, 10, 25, 2, 30), "Europe/Copenhagen")
    assert utc == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"starts_at": "next friday"}, "2026-12-03 19:30"),
        ({"ends_at": "2026-12-03T18:00"}, "cannot end before"),
        ({"ticket_url": "javascript:alert(1)"}, "https://"),
        ({"materials": "Slides only"}, "Line 1"),
        ({"materials": "Slides | ftp://x"}, "https://"),
        ({"title": ""}, "required"),
    ],
)
def test_bad_event_input_names_the_problem(client, db, editor, fields, message):
    response = client.post("/events/new", data=_form(client, **fields))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(Event)) is None


def test_materials_added_after_the_event(client, db, editor):
    client.post("/events/new", data=_form(client))
    event = db.session.scalar(select(Event))
    form = client.get(f"/events/{event.id}/edit").get_data(as_text=True)
    assert 'value="2026-12-03T19:30"' in form
    response = client.post(
        f"/events/{event.id}/edit",
        data=_form(
            client,
            materials="Slides | https://example.dk/slides.pdf | slides\n"
            "Læseliste | https://example.dk/boeger",
        ),
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert event.materials == [
        {"label": "Slides", "url": "https://example.dk/slides.pdf", "tag": "slides"},
        {"label": "Læseliste", "url": "https://example.dk/boeger", "tag": None},
    ]
    page = client.get(f"/events/{event.id}").get_data(as_text=True)
    assert "Læseliste" in page and "https://example.dk/slides.pdf" in page


def test_staff_reads_events_but_cannot_change_them(client, db):
    library = make_library(db)
    event = services.create_event(
        db.session,
        library,
        {"title": "Debat", "starts_at": "2026-12-01T19:00"},
    )
    db.session.commit()
    login(client, make_user(db, library, Role.STAFF))
    assert "Debat" in client.get("/events").get_data(as_text=True)
    page = client.get(f"/events/{event.id}").get_data(as_text=True)
    assert "Debat" in page and f"/events/{event.id}/edit" not in page
    assert client.get("/events/new").status_code == 403
    token = csrf_token(client, "/events")
    response = client.post(f"/events/{event.id}/delete", data={"csrf_token": token})
    assert response.status_code == 403
    assert db.session.get(Event, event.id) is not None


def test_editor_deletes_an_event(client, db, editor):
    client.post("/events/new", data=_form(client))
    event_id = db.session.scalar(select(Event.id))
    token = csrf_token(client, "/events")
    response = client.post(f"/events/{event_id}/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert db.session.scalar(select(Event)) is None


def test_event_clubs_must_be_the_librarys_own(client, db, editor):
    other = make_club(db, make_library(db, slug="utrecht"), slug="debat")
    response = client.post("/events/new", data=_form(client, club_ids=[str(other.id)]))
    assert response.status_code == 400
    assert db.session.scalar(select(Event)) is None


def test_admin_sets_the_newsletter_branding_with_checked_colours(client, db):
    library = make_library(db)
    login(client, make_user(db, library, Role.ADMIN))
    form = {
        "name": library.name,
        "domain": "herning.example.dk",
        "timezone": "Europe/Copenhagen",
        "language": "da",
        "logo_url": "https://herning.example.dk/logo.png",
        "primary_color": "red",
        "accent_color": "#C8102E",
        "csrf_token": csrf_token(client, "/library/settings"),
    }
    response = client.post("/library/settings", data=form)
    assert response.status_code == 400
    assert "#1f4e79" in response.get_data(as_text=True)
    db.session.refresh(library)
    assert library.logo_url is None
    client.post("/library/settings", data={**form, "primary_color": "#004488"})
    db.session.refresh(library)
    assert library.logo_url == "https://herning.example.dk/logo.png"
    assert (library.primary_color, library.accent_color) == ("#004488", "#c8102e")
