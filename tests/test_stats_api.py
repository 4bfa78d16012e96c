"""The statistics API: the same figures as the pages, documented, library-scoped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_api import Api, bearer, error
from test_stats import STARTED, add_links, count, interested_member, sent_campaign

from accounts.models import Role
from conftest import make_club, make_library, make_user
from subscribers.services import join_club


@pytest.fixture
def herning(db):
    library = make_library(db, name="Herning Bibliotekerne")
    return library, make_club(db, library, name="Her er debat")


@pytest.fixture
def api(app, db, herning):
    return Api(app.test_client(), bearer(db, make_user(db, herning[0], Role.STAFF)))


def test_campaign_statistics(api, db, herning):
    campaign = sent_campaign(
        db,
        herning[1],
        delivered=200,
        tracked=100,
        unique_opens_human=40,
        unique_clicks_human=10,
        clicks_machine=4,
    )
    links = add_links(db, campaign, (1, "Ny krimi", "book"), (2, "Billet", None))
    hour = STARTED.replace(minute=0)
    count(db, campaign, hour, 9, links[1], uniques=6)
    count(db, campaign, hour, 4, links[1], reason="known_scanner", uniques=4)
    count(db, campaign, hour + timedelta(days=3), 2, links[2], uniques=2)

    response = api.get(f"/api/campaigns/{campaign.id}/stats")
    assert response.status_code == 200
    body = response.get_json()
    assert body["figures"]["delivered"] == 200
    assert body["rates"] == {
        "open_rate": 0.4,
        "click_through": 0.05,
        "click_through_tracked": 0.1,
        "click_to_open": 0.25,
    }
    assert [
        (li["position"], li["tag"], li["clicks_human"]) for li in body["links"]
    ] == [
        (1, "book", 9),
        (2, None, 2),
    ]
    assert body["links"][0]["clicks_machine"] == 4
    assert body["reasons"][0] == {"reason": "human", "opens": 0, "clicks": 11}
    timeline = body["timeline"]
    assert timeline["timezone"] == "Europe/Copenhagen"
    assert len(timeline["hourly"]) == 48
    assert timeline["hourly"][0] == {
        "start": "2026-10-01T08:00:00+00:00",
        "label": "2026-10-01 10:00 CEST",
        "human": 9,
        "machine": 4,
    }
    assert timeline["daily"] == [
        {
            "start": "2026-10-03T08:00:00+00:00",
            "label": "2026-10-03",
            "human": 0,
            "machine": 0,
        },
        {
            "start": "2026-10-03T22:00:00+00:00",
            "label": "2026-10-04",
            "human": 2,
            "machine": 0,
        },
    ]


def test_trends_and_their_limit(api, db, herning):
    club = herning[1]
    for week in range(3):
        sent_campaign(
            db,
            club,
            subject=f"Uge {40 + week}",
            started=STARTED + timedelta(weeks=week),
            delivered=100,
            unique_clicks_human=week,
        )
    body = api.get(f"/api/clubs/{club.id}/trends?limit=2").get_json()
    assert body["anonymous"] is False
    assert [i["subject"] for i in body["items"]] == ["Uge 42", "Uge 41"]
    assert body["items"][0]["rates"]["click_through"] == 0.02
    for bad in ("0", "101", "x"):
        response = api.get(f"/api/clubs/{club.id}/trends?limit={bad}")
        assert response.status_code == 422
        assert error(response)["field"] == "limit"


def test_interests_and_their_period(api, db, herning):
    club = herning[1]
    campaign = sent_campaign(db, club, started=datetime.now(UTC) - timedelta(days=2))
    links = add_links(db, campaign, (1, "Roman", "book"), (2, "Billet", "ticket"))
    hour = campaign.started_at.replace(minute=0, second=0, microsecond=0)
    count(db, campaign, hour, 3, links[1], uniques=2)
    count(db, campaign, hour, 5, links[2], uniques=4)

    body = api.get(f"/api/clubs/{club.id}/interests?days=30").get_json()
    assert body == {
        "days": 30,
        "items": [
            {"tag": "ticket", "clicks": 5, "unique_clicks": 4},
            {"tag": "book", "clicks": 3, "unique_clicks": 2},
        ],
    }
    response = api.get(f"/api/clubs/{club.id}/interests?days=14")
    assert response.status_code == 422 and error(response)["field"] == "days"


def test_engagement_hides_clubs_without_consent(api, db, herning):
    library, club = herning
    vip = make_club(db, library, slug="vip", name="VIP-klubben")
    campaign = sent_campaign(db, club)
    links = add_links(db, campaign, (1, "Roman", "book"))
    person = interested_member(db, club, campaign, "a@example.dk", True, [links[1]])
    join_club(db.session, vip, person, source="t", consent_given=True)
    db.session.commit()

    items = api.get(f"/api/subscribers/{person.id}/engagement").get_json()["items"]
    assert items == [
        {
            "club_id": club.id,
            "club_name": "Her er debat",
            "hidden": None,
            "received": 1,
            "opened": 1,
            "clicked": 1,
            "last_activity": "2026-10-01T09:30:00+00:00",
            "tags": [{"tag": "book", "clicks": 1}],
        },
        {
            "club_id": vip.id,
            "club_name": "VIP-klubben",
            "hidden": "no_consent",
            "received": None,
            "opened": None,
            "clicked": None,
            "last_activity": None,
            "tags": [],
        },
    ]


def test_another_librarys_statistics_are_404(app, db, api):
    utrecht = make_library(db, slug="utrecht", language="nl")
    club = make_club(db, utrecht, slug="debat")
    campaign = sent_campaign(db, club, delivered=99)
    person = interested_member(db, club, campaign, "b@example.nl", True, [])
    for url in (
        f"/api/campaigns/{campaign.id}/stats",
        f"/api/clubs/{club.id}/trends",
        f"/api/clubs/{club.id}/interests",
        f"/api/subscribers/{person.id}/engagement",
    ):
        response = api.get(url)
        assert response.status_code == 404, url
        assert error(response)["code"] == "not_found"
    assert app.test_client().get(f"/api/clubs/{club.id}/trends").status_code == 401
