"""From hits at the endpoints to the figures: verdicts in context, counts, retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

import scheduler
from campaigns import sending
from campaigns.models import SendLog
from conftest import make_club, make_library
from klubpost.db import utcnow
from subscribers.services import unsubscribe
from tracking.models import (
    CampaignStats,
    EventKind,
    TrackCount,
    TrackEvent,
    TrackingMode,
)
from tracking.rollup import purge_events, roll_up
from tracking_kit import (
    BROWSER,
    add_member,
    events,
    flush,
    links_of,
    make_tracked_campaign,
    send_log,
    signer,
    start,
)

APPLE = {"User-Agent": "Mozilla/5.0"}
LATER = timedelta(minutes=1)  # when the roll-up runs: every hit has settled


@pytest.fixture
def app_config(app_config):
    app_config["TRACKING_FLUSH_SECONDS"] = 3600
    return app_config


class Mailing:
    """A campaign sent three days ago to some members, and their hits."""

    def __init__(self, app, db, client, club, names: dict[str, bool]) -> None:
        self.db, self.client = db, client
        self.members = {
            name: add_member(db, club, name, tracking=consent)
            for name, consent in names.items()
        }
        self.campaign = make_tracked_campaign(db, club)
        start(db, self.campaign)
        sending.Sender(app, connections=1).run()
        self.sent_ago(timedelta(days=3))
        self.links = links_of(db, self.campaign)
        self.honeypot = self.links[0]

    def sent_ago(self, age: timedelta, name: str | None = None) -> None:
        """Pretend the mails (or one member's) went out `age` ago."""
        query = update(SendLog).where(SendLog.campaign_id == self.campaign.id)
        if name is not None:
            query = query.where(SendLog.id == self.send(name))
        self.db.session.execute(query.values(sent_at=utcnow() - age))
        self.db.session.commit()

    def send(self, name: str) -> int | None:
        """The member's send-log id."""
        return send_log(self.db, self.campaign, self.members[name]).id

    def open(self, name: str | None, headers=None, ip="192.0.2.10") -> None:
        """The member's mail client loads the pixel."""
        send = self.send(name) if name else None
        path = f"/o/{signer().open(self.campaign.id, send)}.gif"
        response = self.client.get(
            path,
            headers=headers or {"User-Agent": BROWSER},
            environ_base={"REMOTE_ADDR": ip},
        )
        assert response.status_code == 200

    def click(self, name: str | None, number: int, headers=None) -> None:
        """The member clicks the `number`th tracked link (0: the honeypot)."""
        link = self.links[number]
        send = self.send(name) if name else None
        response = self.client.get(
            f"/c/{signer().click(link.id, send)}",
            headers=headers or {"User-Agent": BROWSER},
        )
        assert response.status_code == 302

    def hits(self) -> list[TrackEvent]:
        """The raw events, flushed."""
        flush()
        return events(self.db, self.campaign)

    def at(self, moments: list[timedelta]) -> None:
        """Give the hits so far these times (from two days ago), in order."""
        base = utcnow() - timedelta(days=2)
        for event, moment in zip(self.hits(), moments, strict=True):
            event.occurred_at = base + moment
        self.db.session.commit()

    def roll_up(self) -> CampaignStats:
        """Run the roll-up as the scheduler would, once all hits have settled."""
        flush()
        roll_up(self.db.session, utcnow() + LATER)
        self.db.session.expire_all()
        return self.db.session.get(CampaignStats, self.campaign.id)

    def counts(self) -> dict[tuple, tuple[int, int]]:
        """{(link number or 0 for opens, kind, reason): (hits, uniques)}."""
        positions = {link.id: number for number, link in enumerate(self.links)}
        result: dict[tuple, tuple[int, int]] = {}
        for row in self.db.session.scalars(
            select(TrackCount).filter_by(campaign_id=self.campaign.id)
        ):
            key = (positions.get(row.link_id, 0), row.kind.value, row.reason)
            hits, uniques = result.get(key, (0, 0))
            result[key] = (hits + row.hits, uniques + row.uniques)
        return result


@pytest.fixture
def club(db):
    return make_club(db, make_library(db), tracking_consent_required=True)


def _verdicts(hits: list[TrackEvent]) -> list[tuple[str, str]]:
    return [(hit.kind.value, hit.reason) for hit in hits]


def test_people_are_counted_once_each_and_their_first_open_and_click_kept(
    app, db, client, club
):
    mailing = Mailing(app, db, client, club, {"anna": True, "bo": True})
    mailing.open("anna")
    mailing.open("anna")
    mailing.click("anna", 2)
    mailing.click("anna", 2)
    mailing.open("bo", headers=APPLE, ip="17.253.1.1")  # Apple's proxy, not Bo
    mailing.at([timedelta(minutes=m) for m in (1, 30, 2, 40, 5)])

    stats = mailing.roll_up()

    assert mailing.counts() == {
        (0, "open", "human"): (2, 1),
        (0, "open", "apple_privacy_proxy"): (1, 1),
        (2, "click", "human"): (2, 1),
    }
    assert (stats.recipients, stats.delivered, stats.tracked) == (2, 2, 2)
    assert (stats.opens_human, stats.unique_opens_human) == (2, 1)
    assert (stats.opens_machine, stats.unique_opens_machine) == (1, 1)
    assert (stats.clicks_human, stats.unique_clicks_human) == (2, 1)
    assert (stats.clicks_machine, stats.failed, stats.bounced) == (0, 0, 0)
    anna = db.session.get(SendLog, mailing.send("anna"))
    first_open, first_click = mailing.hits()[0], mailing.hits()[2]
    assert anna.opened_at == first_open.occurred_at
    assert anna.clicked_at == first_click.occurred_at
    bo = db.session.get(SendLog, mailing.send("bo"))
    assert bo.opened_at is None  # only a machine opened Bo's mail

    # Rolling up again counts nothing twice.
    assert mailing.roll_up().opens_human == 2


def test_a_scanner_burst_is_machine_and_the_same_clicks_spread_out_are_a_person(
    app, db, client, club
):
    mailing = Mailing(app, db, client, club, {"anna": True, "bo": True})
    for position in (1, 2, 3):
        mailing.click("bo", position)  # a gateway that looks like a browser
    for position in (1, 2, 3):
        mailing.click("anna", position)  # a person, over a few minutes
    seconds = [0, 0.6, 1.3, 60, 120, 180]
    mailing.at([timedelta(seconds=s) for s in seconds])

    mailing.roll_up()

    assert (
        _verdicts(mailing.hits())
        == [("click", "scanner_burst")] * 3 + [("click", "human")] * 3
    )
    assert db.session.get(SendLog, mailing.send("bo")).clicked_at is None


def test_the_honeypot_marks_its_messages_hits_around_it_as_machine(
    app, db, client, club
):
    mailing = Mailing(app, db, client, club, {"anna": True, "bo": True})
    mailing.open("anna")  # the gateway fetches the image...
    mailing.click("anna", 0)  # ...the link no person can see...
    mailing.click("anna", 3)  # ...and a link, a few seconds apart
    mailing.click("anna", 3)  # Anna herself, the next day
    mailing.click("bo", 3)  # Bo at the same moment: his own message
    mailing.at([timedelta(seconds=s) for s in (0, 4, 9, 86_400, 5)])

    stats = mailing.roll_up()

    assert _verdicts(mailing.hits()) == [
        ("open", "honeypot_link"),
        ("click", "honeypot_link"),
        ("click", "honeypot_link"),
        ("click", "human"),
        ("click", "human"),
    ]
    assert (stats.clicks_human, stats.clicks_machine) == (2, 2)
    assert (stats.unique_clicks_human, stats.unique_opens_human) == (2, 0)


def test_hits_right_after_our_server_handed_the_mail_over_are_machines(
    app, db, client, club
):
    mailing = Mailing(app, db, client, club, {"anna": True})
    mailing.sent_ago(timedelta(seconds=0), "anna")
    mailing.open("anna")
    mailing.click("anna", 1)

    mailing.roll_up()

    assert _verdicts(mailing.hits()) == [
        ("open", "too_soon_after_sending"),
        ("click", "too_soon_after_sending"),
    ]


def test_machines_known_at_the_endpoint_keep_their_reason(app, db, client, club):
    mailing = Mailing(app, db, client, club, {"anna": True})
    mailing.open("anna", headers={"User-Agent": "GoogleImageProxy"})
    mailing.click("anna", 1, headers={"User-Agent": "python-requests/2.32"})
    mailing.client.head(f"/c/{signer().click(mailing.links[1].id, None)}")

    stats = mailing.roll_up()

    assert _verdicts(mailing.hits()) == [
        ("open", "google_image_proxy"),
        ("click", "known_scanner"),
        ("click", "head_request"),
    ]
    assert (stats.opens_machine, stats.clicks_machine, stats.clicks_human) == (1, 2, 0)


def test_a_member_who_withdrew_consent_is_forgotten_but_still_counted(
    app, db, client, club
):
    mailing = Mailing(app, db, client, club, {"anna": True})
    mailing.open("anna")
    mailing.click("anna", 2)
    mailing.members["anna"].tracking_consent = False  # on the preferences page
    db.session.commit()

    stats = mailing.roll_up()

    assert [hit.send_id for hit in mailing.hits()] == [None, None]
    anna = db.session.get(SendLog, mailing.send("anna"))
    assert anna.opened_at is None and anna.clicked_at is None
    assert (stats.unique_opens_human, stats.clicks_human) == (1, 1)


def test_anonymous_clubs_are_counted_without_anyone(app, db, client):
    club = make_club(
        db,
        make_library(db),
        tracking_consent_required=False,
        tracking_mode=TrackingMode.ANONYMOUS,
    )
    mailing = Mailing(app, db, client, club, {"anna": False, "bo": False})
    mailing.open(None)
    mailing.open(None)
    mailing.click(None, 3)
    mailing.at([timedelta(minutes=m) for m in (1, 2, 3)])

    stats = mailing.roll_up()

    assert all(hit.send_id is None for hit in mailing.hits())
    assert (stats.tracked, stats.opens_human, stats.unique_opens_human) == (2, 2, 2)
    assert mailing.counts()[(3, "click", "human")] == (1, 1)


def test_the_roll_up_waits_until_hits_have_settled(app, db, client, club):
    mailing = Mailing(app, db, client, club, {"anna": True})
    mailing.open("anna")
    flush()
    assert roll_up(db.session, utcnow()) == 0  # a burst may still be going on
    assert roll_up(db.session, utcnow() + LATER) == 1
    assert roll_up(db.session, utcnow() + LATER) == 0


def test_figures_outlive_the_retention_purge(app, db, client, club):
    app.config["TRACKING_RETENTION_DAYS"] = 30
    mailing = Mailing(app, db, client, club, {"anna": True, "bo": True})
    mailing.sent_ago(timedelta(days=60))
    mailing.open("anna")
    mailing.click("anna", 1)
    mailing.click("bo", 2)
    mailing.at([timedelta(days=-40), timedelta(days=-40), timedelta(days=-1)])
    before = mailing.roll_up()
    figures = (before.opens_human, before.unique_clicks_human, before.clicks_human)
    counts = mailing.counts()
    opened_at = db.session.get(SendLog, mailing.send("anna")).opened_at
    mailing.open("bo")  # not rolled up yet: kept, however old
    mailing.at([timedelta(days=d) for d in (-40, -40, -1, -50)])

    assert purge_events(db.session, utcnow()) == 2

    assert [hit.send_id for hit in mailing.hits()] == [mailing.send("bo")] * 2
    stats = mailing.roll_up()
    assert (stats.opens_human, stats.unique_clicks_human, stats.clicks_human) == (
        figures[0] + 1,
        figures[1],
        figures[2],
    )
    assert {k: v for k, v in mailing.counts().items() if k[1] == "click"} == {
        k: v for k, v in counts.items() if k[1] == "click"
    }
    assert db.session.get(SendLog, mailing.send("anna")).opened_at == opened_at
    assert purge_events(db.session, utcnow()) == 1  # now it is rolled up


def test_unsubscribes_are_blamed_on_the_campaign_before_them(app, db, client, club):
    first = Mailing(app, db, client, club, {"anna": True, "bo": True, "cy": True})
    unsubscribe(first.members["anna"])
    db.session.commit()
    second = make_tracked_campaign(db, club)
    start(db, second)
    sending.Sender(app, connections=1).run()
    unsubscribe(first.members["bo"])  # after the second one started
    db.session.commit()

    assert first.roll_up().unsubscribed == 1
    assert db.session.get(CampaignStats, second.id).unsubscribed == 1
    assert db.session.get(CampaignStats, second.id).recipients == 2  # not Anna


def test_the_scheduler_and_the_cli_roll_up_and_clean(app, db, client, club, runner):
    mailing = Mailing(app, db, client, club, {"anna": True})
    mailing.open("anna")
    mailing.at([timedelta(0)])  # two days ago: settled

    scheduler.tick(app)

    db.session.expire_all()
    assert db.session.get(CampaignStats, mailing.campaign.id).opens_human == 1
    mailing.click("anna", 1)
    mailing.at([timedelta(0), timedelta(minutes=1)])
    result = runner.invoke(args=["tracking", "rollup"])
    assert "1 hit(s) rolled up." in result.output
    app.config["TRACKING_RETENTION_DAYS"] = 0
    result = runner.invoke(args=["tracking", "purge"])
    assert "2 raw hit(s) deleted." in result.output
    assert mailing.hits() == []
    assert db.session.get(CampaignStats, mailing.campaign.id).clicks_human == 1
    assert EventKind.OPEN in {
        row.kind for row in db.session.scalars(select(TrackCount))
    }


def test_a_member_who_clicks_two_links_is_one_unique_click_and_rates_stay_rates(
    app, db, client, club
):
    from tracking import stats as tracking_stats

    mailing = Mailing(app, db, client, club, {"anna": True})
    mailing.open("anna")
    mailing.click("anna", 1)
    mailing.click("anna", 2)
    mailing.at([timedelta(minutes=m) for m in (1, 3, 10)])

    stats = mailing.roll_up()

    assert (stats.clicks_human, stats.unique_clicks_human) == (2, 1)
    # Per link, Anna is one of the members who clicked each of them.
    assert mailing.counts()[(1, "click", "human")] == (1, 1)
    assert mailing.counts()[(2, "click", "human")] == (1, 1)
    summary = tracking_stats.campaign_summary(db.session, mailing.campaign)
    assert summary.rates["click_through"] == 1.0
    assert summary.rates["click_to_open"] == 1.0
