"""Repeating regular issues: the next one is a draft, proposed for the next date."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from test_sending import add_members, make_campaign

from accounts.models import Role
from accounts.services import issue_token
from campaigns import sending
from campaigns.models import Campaign, CampaignKind, CampaignStatus, Repeat
from conftest import csrf_token, login, make_club, make_library, make_user

ZONE = "Europe/Copenhagen"


@pytest.fixture
def club(db):
    return make_club(db, make_library(db, timezone=ZONE))


def _local(*args) -> datetime:
    """A Copenhagen wall-clock time as UTC."""
    from zoneinfo import ZoneInfo

    return datetime(*args, tzinfo=ZoneInfo(ZONE)).astimezone(UTC)


@pytest.mark.parametrize(
    ("repeat", "sent", "expected"),
    [
        # A week later at the same wall-clock time, across the end of summer time.
        (Repeat.WEEKLY, _local(2026, 10, 20, 10, 0), _local(2026, 10, 27, 10, 0)),
        (Repeat.FORTNIGHTLY, _local(2026, 12, 22, 9, 0), _local(2027, 1, 5, 9, 0)),
        # The first Tuesday of December → the first Tuesday of January.
        (Repeat.MONTHLY_WEEKDAY, _local(2026, 12, 1, 17, 0), _local(2027, 1, 5, 17, 0)),
        # A fifth Tuesday (29 December): January has four, so its last one.
        (
            Repeat.MONTHLY_WEEKDAY,
            _local(2026, 12, 29, 17, 0),
            _local(2027, 1, 26, 17, 0),
        ),
        # The last Friday of November → the last Friday of December.
        (
            Repeat.MONTHLY_LAST_WEEKDAY,
            _local(2026, 11, 27, 8, 0),
            _local(2026, 12, 25, 8, 0),
        ),
        (Repeat.MONTHLY_DAY, _local(2027, 1, 31, 8, 0), _local(2027, 2, 28, 8, 0)),
        # Into summer time: still 08:00 on the clock.
        (Repeat.MONTHLY_DAY, _local(2027, 3, 15, 8, 0), _local(2027, 4, 15, 8, 0)),
    ],
)
def test_next_dates_keep_the_rule_and_the_local_time(repeat, sent, expected):
    assert sending.next_occurrence(repeat, sent, ZONE) == expected


def test_a_month_day_series_returns_to_its_day_after_a_short_month():
    february = sending.next_occurrence(
        Repeat.MONTHLY_DAY, _local(2027, 1, 31, 8, 0), ZONE
    )
    march = sending.next_occurrence(Repeat.MONTHLY_DAY, february, ZONE, anchor_day=31)
    assert march == _local(2027, 3, 31, 8, 0)


def _editor(client, db, club):
    login(client, make_user(db, club.library, Role.EDITOR, email="ed@example.dk"))


def test_a_repeating_issue_makes_its_next_issue_as_a_draft_to_approve(client, db, club):
    add_members(db, club, 2)
    campaign = make_campaign(db, club)
    _editor(client, db, club)
    page = f"/campaigns/{campaign.id}"
    response = client.post(
        f"{page}/schedule",
        data={
            "csrf_token": csrf_token(client, page),
            "mode": "fixed",
            "send_at": "2030-05-07T10:00",  # the first Tuesday of May
            "repeat": "monthly_weekday",
        },
    )
    assert response.status_code == 302
    assert "Repeats: Every month on the same weekday" in client.get(page).text

    sending.start_due(db.session, now=_local(2030, 5, 7, 10, 1))
    db.session.expire_all()
    nxt = db.session.scalar(
        select(Campaign).where(Campaign.previous_issue_id == campaign.id)
    )
    assert nxt is not None and nxt.status is CampaignStatus.DRAFT
    assert nxt.send_at == _local(2030, 6, 4, 10, 0)  # the first Tuesday of June
    assert (nxt.subject, nxt.blocks, nxt.repeat) == (
        campaign.subject,
        campaign.blocks,
        Repeat.MONTHLY_WEEKDAY,
    )
    assert f'href="/campaigns/{nxt.id}"' in client.get(page).text

    # Not approved: its proposed time passes and nothing is sent.
    assert sending.start_due(db.session, now=_local(2030, 6, 5, 0, 0)) == []
    html = client.get(f"/campaigns/{nxt.id}").text
    assert 'id="next-issue-note"' in html and "2030-06-04 10:00" in html
    assert 'value="2030-06-04T10:00"' in html  # the proposal fills the form

    # Approving it (scheduling for a new time) sends it and plans the one after.
    response = client.post(
        f"/campaigns/{nxt.id}/schedule",
        data={
            "csrf_token": csrf_token(client, page),
            "mode": "fixed",
            "send_at": "2030-06-11T10:00",
            "repeat": "monthly_weekday",
        },
    )
    assert response.status_code == 302, response.text
    assert sending.start_due(db.session, now=_local(2030, 6, 11, 10, 0)) == [nxt.id]
    third = db.session.scalar(
        select(Campaign).where(Campaign.previous_issue_id == nxt.id)
    )
    assert third.send_at == _local(2030, 7, 9, 10, 0)  # the second Tuesday of July


def test_the_next_issue_is_made_only_once(db, club):
    campaign = make_campaign(db, club, repeat=Repeat.WEEKLY, send_at=_local(2030, 1, 1))
    first = sending.plan_next_issue(db.session, campaign)
    db.session.commit()
    again = sending.plan_next_issue(db.session, campaign)
    assert again.id == first.id
    assert (
        len(
            db.session.scalars(
                select(Campaign).where(Campaign.previous_issue_id == campaign.id)
            ).all()
        )
        == 1
    )


def test_a_newsletter_that_does_not_repeat_makes_no_next_issue(db, club):
    add_members(db, club, 1)
    campaign = make_campaign(db, club)
    sending.schedule(campaign, sending.ScheduleMode.NOW, now=_local(2030, 1, 1))
    sending.start_due(db.session, now=_local(2030, 1, 1))
    assert db.session.scalar(select(Campaign).where(Campaign.id != campaign.id)) is None


def test_only_regular_issues_sent_at_a_time_repeat(client, db, club):
    event_campaign = make_campaign(db, club, kind=CampaignKind.BEFORE_EVENT)
    _editor(client, db, club)
    page = f"/campaigns/{event_campaign.id}"
    response = client.post(
        f"{page}/schedule",
        data={
            "csrf_token": csrf_token(client, page),
            "mode": "now",
            "repeat": "weekly",
        },
    )
    assert response.status_code == 400
    assert "Only regular issues can repeat." in response.text
    db.session.expire_all()
    assert event_campaign.status is CampaignStatus.DRAFT
    assert event_campaign.repeat is None


def test_the_api_schedules_a_repeating_issue_and_refuses_bad_rules(client, db, club):
    campaign = make_campaign(db, club)
    _token, clear = issue_token(
        db.session, make_user(db, club.library, Role.EDITOR), "t"
    )
    db.session.commit()
    headers = {"Authorization": f"Bearer {clear}"}
    url = f"/api/campaigns/{campaign.id}/schedule"

    bad = client.post(
        url,
        json={"mode": "fixed", "send_at": "2030-01-01T10:00", "repeat": "daily"},
        headers=headers,
    )
    assert bad.status_code == 422
    assert bad.get_json()["error"]["field"] == "repeat"
    db.session.expire_all()
    assert campaign.status is CampaignStatus.DRAFT

    at = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    good = client.post(
        url, json={"mode": "fixed", "send_at": at, "repeat": "weekly"}, headers=headers
    )
    assert good.status_code == 200, good.get_json()
    assert good.get_json()["repeat"] == "weekly"
    assert good.get_json()["previous_issue_id"] is None
