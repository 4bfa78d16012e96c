"""Statistics pages and CSV files: figures, rates, buckets, consent, roles."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import Role
from campaigns.models import CampaignStatus, SendLog, SendStatus
from campaigns.services import create_campaign
from conftest import login, make_club, make_library, make_subscriber, make_user
from subscribers.services import join_club
from tracking import stats
from tracking.models import (
    CampaignStats,
    EventKind,
    TrackCount,
    TrackedLink,
    TrackEvent,
    TrackingMode,
)

STARTED = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)


def sent_campaign(db, club, subject="Efterårets bøger", started=STARTED, **figures):
    """A campaign that went out at `started`, with its headline figures."""
    campaign = create_campaign(db.session, club, None, {"kind": "regular"})
    campaign.subject = subject
    campaign.status = CampaignStatus.SENT
    campaign.started_at = campaign.sent_at = started
    db.session.flush()
    db.session.add(CampaignStats(campaign_id=campaign.id, **figures))
    db.session.commit()
    return campaign


def add_links(db, campaign, *links):
    """Store (position, label, tag) links, plus the hidden honeypot at 0."""
    rows = [
        TrackedLink(
            campaign_id=campaign.id,
            position=0,
            url="https://herning.example.dk/trap",
            label="",
            honeypot=True,
        )
    ]
    for position, label, tag in links:
        rows.append(
            TrackedLink(
                campaign_id=campaign.id,
                position=position,
                url=f"https://herning.example.dk/{position}",
                label=label,
                tag=tag,
            )
        )
    db.session.add_all(rows)
    db.session.commit()
    return {row.position: row for row in rows}


def count(db, campaign, hour, hits, link=None, reason="human", uniques=0, kind=None):
    """Add one hourly count, as the roll-up would."""
    db.session.add(
        TrackCount(
            campaign_id=campaign.id,
            link_id=link.id if link else 0,
            kind=kind or (EventKind.CLICK if link else EventKind.OPEN),
            hour=hour,
            reason=reason,
            hits=hits,
            uniques=uniques,
        )
    )
    db.session.commit()


@pytest.fixture
def herning(db):
    library = make_library(db, name="Herning Bibliotekerne")
    club = make_club(db, library, name="Her er debat")
    return library, club


@pytest.fixture
def staff_client(client, db, herning):
    login(client, make_user(db, herning[0], Role.STAFF))
    return client


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    data = response.get_data()
    assert data.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


# ----------------------------------------------------------------- campaign


def test_campaign_page_shows_figures_and_rates(staff_client, db, herning):
    campaign = sent_campaign(
        db,
        herning[1],
        recipients=210,
        delivered=200,
        failed=6,
        bounced=4,
        unsubscribed=3,
        tracked=100,
        opens_human=55,
        opens_machine=70,
        unique_opens_human=40,
        unique_opens_machine=60,
        clicks_human=17,
        clicks_machine=9,
        unique_clicks_human=10,
        unique_clicks_machine=8,
    )
    page = staff_client.get(f"/campaigns/{campaign.id}/stats")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="fig-delivered">200<' in html
    assert 'id="fig-bounced">4<' in html
    assert 'id="fig-unsubscribed">3<' in html
    assert 'id="fig-unique-opens">40<' in html
    assert 'id="fig-unique-clicks">10<' in html
    assert 'id="rate-open">40.0 %<' in html  # 40 of 100 tracked
    assert 'id="rate-click-through">5.0 %<' in html  # 10 of 200 delivered
    assert 'id="rate-click-through-tracked">10.0 %<' in html  # 10 of 100 tracked
    assert 'id="rate-click-to-open">25.0 %<' in html  # 10 of 40 who opened
    assert "Apple Mail Privacy Protection" in html
    assert "security scanners" in html


def test_rates_are_unknown_rather_than_divided_by_zero(db, herning):
    campaign = sent_campaign(db, herning[1])
    summary = stats.campaign_summary(db.session, campaign)
    assert summary.rates == dict.fromkeys(stats.RATES)


def test_anonymous_club_shows_totals_and_says_why(staff_client, db, herning):
    club = herning[1]
    club.tracking_mode = TrackingMode.ANONYMOUS
    campaign = sent_campaign(db, club, delivered=50, opens_human=12, clicks_human=5)
    html = staff_client.get(f"/campaigns/{campaign.id}/stats").get_data(as_text=True)
    assert 'id="anonymous-note"' in html
    assert "no unique figures" in html
    assert 'id="rate-click-through"' not in html
    assert ">12<" in html and ">5<" in html


def test_link_table_in_newsletter_order_without_the_honeypot(staff_client, db, herning):
    campaign = sent_campaign(db, herning[1])
    links = add_links(
        db,
        campaign,
        (2, "Billetter til debatten", "ticket"),
        (1, '=HYPERLINK("http://evil")', "book"),
    )
    hour = STARTED.replace(minute=0)
    count(db, campaign, hour, 7, links[1], uniques=5)
    count(db, campaign, hour + timedelta(hours=1), 2, links[1], uniques=1)
    count(db, campaign, hour, 4, links[1], reason="known_scanner", uniques=4)
    count(db, campaign, hour, 3, links[0], reason="honeypot_link", uniques=3)

    rows = stats.link_table(db.session, campaign.id)
    assert [(r.position, r.clicks_human, r.unique_clicks_human) for r in rows] == [
        (1, 9, 6),
        (2, 0, 0),
    ]
    assert rows[0].clicks_machine == 4
    html = staff_client.get(f"/campaigns/{campaign.id}/stats").get_data(as_text=True)
    assert "Billetter til debatten" in html and "/trap" not in html

    table = read_csv(staff_client.get(f"/campaigns/{campaign.id}/stats/links.csv"))
    assert table[0][:4] == ["position", "label", "tag", "url"]
    # A label a spreadsheet would run as a formula stays text.
    assert table[1][:3] == ["1", '\'=HYPERLINK("http://evil")', "book"]
    assert table[1][4:] == ["9", "4", "6", "4"]
    assert table[2][1:3] == ["Billetter til debatten", "ticket"]
    assert len(table) == 3


def test_reasons_table_puts_people_first(staff_client, db, herning):
    campaign = sent_campaign(db, herning[1])
    links = add_links(db, campaign, (1, "Bog", "book"))
    hour = STARTED.replace(minute=0)
    count(db, campaign, hour, 30, reason="apple_privacy_proxy")
    count(db, campaign, hour, 4)
    count(db, campaign, hour, 2, links[1])
    count(db, campaign, hour, 5, links[1], reason="scanner_burst")
    table = read_csv(staff_client.get(f"/campaigns/{campaign.id}/stats/reasons.csv"))
    assert table == [
        ["reason", "opens", "clicks"],
        ["human", "4", "2"],
        ["apple_privacy_proxy", "30", "0"],
        ["scanner_burst", "0", "5"],
    ]
    html = staff_client.get(f"/campaigns/{campaign.id}/stats").get_data(as_text=True)
    assert "Apple Mail Privacy Protection</td><td>30<" in html


def test_summary_csv_has_every_figure_and_rate(staff_client, db, herning):
    campaign = sent_campaign(
        db, herning[1], delivered=200, tracked=100, unique_clicks_human=10
    )
    table = dict(
        read_csv(staff_client.get(f"/campaigns/{campaign.id}/stats/summary.csv"))
    )
    assert table["delivered"] == "200"
    assert table["click_through"] == "0.0500"
    assert table["click_to_open"] == ""  # nobody opened: no rate
    assert set(stats.FIGURES) | set(stats.RATES) | {"figure"} == set(table)


# ----------------------------------------------------------------- over time


def test_hourly_for_two_days_then_daily(db, herning):
    campaign = sent_campaign(db, herning[1])
    links = add_links(db, campaign, (1, "Bog", "book"))
    start = STARTED.replace(minute=0)  # 08:00 UTC, 10:00 in Copenhagen
    count(db, campaign, start, 3, links[1])
    count(db, campaign, start + timedelta(hours=47), 2, links[1])
    count(db, campaign, start + timedelta(hours=47), 1, links[1], reason="honeypot")
    count(db, campaign, start + timedelta(hours=48), 5, links[1])
    count(db, campaign, start + timedelta(days=4), 7, links[1])
    count(db, campaign, start, 99)  # opens are not clicks

    timeline = stats.clicks_over_time(db.session, campaign, "Europe/Copenhagen")
    assert len(timeline.hourly) == 48
    assert timeline.hourly[0].label == "2026-10-01 10:00 CEST"
    assert (timeline.hourly[0].human, timeline.hourly[0].machine) == (3, 0)
    assert (timeline.hourly[47].human, timeline.hourly[47].machine) == (2, 1)
    assert sum(b.human for b in timeline.hourly) == 5
    # Daily from the 48th hour (Oct 3, 10:00 local) to the last day with clicks.
    assert [(b.label, b.human) for b in timeline.daily] == [
        ("2026-10-03", 5),
        ("2026-10-04", 0),
        ("2026-10-05", 7),
    ]
    assert timeline.daily[0].start == start + timedelta(hours=48)
    assert timeline.daily[1].start == datetime(2026, 10, 3, 22, tzinfo=UTC)


def test_a_daylight_saving_day_is_one_bucket_of_25_hours(db, herning):
    # Copenhagen leaves summer time on Sunday 25 October 2026 at 03:00 CEST.
    started = datetime(2026, 10, 22, 12, tzinfo=UTC)
    campaign = sent_campaign(db, herning[1], started=started)
    links = add_links(db, campaign, (1, "Bog", "book"))
    count(db, campaign, datetime(2026, 10, 24, 21, tzinfo=UTC), 1, links[1])  # 24th
    count(db, campaign, datetime(2026, 10, 24, 22, tzinfo=UTC), 2, links[1])  # 00:00
    count(db, campaign, datetime(2026, 10, 25, 22, tzinfo=UTC), 4, links[1])  # 23:00
    count(db, campaign, datetime(2026, 10, 25, 23, tzinfo=UTC), 8, links[1])  # 26th
    timeline = stats.clicks_over_time(db.session, campaign, "Europe/Copenhagen")
    assert [(b.label, b.human) for b in timeline.daily] == [
        ("2026-10-24", 1),
        ("2026-10-25", 6),
        ("2026-10-26", 8),
    ]
    assert timeline.daily[2].start - timeline.daily[1].start == timedelta(hours=25)


def test_the_two_hours_named_0200_on_the_dst_day_are_told_apart(db, herning):
    started = datetime(2026, 10, 24, 12, tzinfo=UTC)
    campaign = sent_campaign(db, herning[1], started=started)
    timeline = stats.clicks_over_time(db.session, campaign, "Europe/Copenhagen")
    labels = [b.label for b in timeline.hourly]
    assert "2026-10-25 02:00 CEST" in labels and "2026-10-25 02:00 CET" in labels
    assert len(set(labels)) == 48


def test_chart_draws_a_bar_per_hour_with_clicks(staff_client, db, herning):
    campaign = sent_campaign(db, herning[1])
    links = add_links(db, campaign, (1, "Bog", "book"))
    start = STARTED.replace(minute=0)
    count(db, campaign, start + timedelta(hours=2), 6, links[1])
    count(db, campaign, start + timedelta(hours=2), 2, links[1], reason="scanner")
    count(db, campaign, start + timedelta(hours=5), 1, links[1])
    html = staff_client.get(f"/campaigns/{campaign.id}/stats").get_data(as_text=True)
    hourly = html[html.index('id="chart-hourly"') : html.index("</figure>")]
    assert '<svg class="chart"' in hourly and 'role="img"' in hourly
    assert "7 clicks by people and 2 by machines" in hourly
    assert hourly.count('<rect class="bar') == 3
    assert "2026-10-01 12:00 CEST: people 6</title>" in hourly
    assert "http" not in hourly.replace("http://www.w3.org/2000/svg", "")

    table = read_csv(staff_client.get(f"/campaigns/{campaign.id}/stats/timeline.csv"))
    assert table[0] == [
        "bucket",
        "start_utc",
        "local_Europe/Copenhagen",
        "human",
        "machine",
    ]
    assert table[3] == [
        "hour",
        "2026-10-01T10:00:00+00:00",
        "2026-10-01 12:00 CEST",
        "6",
        "2",
    ]
    assert len(table) == 1 + 48


def test_a_draft_has_no_statistics_yet(staff_client, db, herning):
    campaign = create_campaign(db.session, herning[1], None, {"kind": "regular"})
    db.session.commit()
    html = staff_client.get(f"/campaigns/{campaign.id}/stats").get_data(as_text=True)
    assert "Not sent yet." in html and "<svg" not in html
    editor = staff_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert f"/campaigns/{campaign.id}/stats" not in editor


def test_campaign_pages_link_to_the_statistics(staff_client, db, herning):
    campaign = sent_campaign(db, herning[1])
    stats_url = f"/campaigns/{campaign.id}/stats"
    assert stats_url in staff_client.get(f"/campaigns/{campaign.id}").get_data(
        as_text=True
    )
    listing = staff_client.get(f"/clubs/{herning[1].id}/campaigns")
    assert stats_url in listing.get_data(as_text=True)


# ----------------------------------------------------------------- roles


def test_every_staff_role_reads_statistics(client, db, herning):
    library, club = herning
    campaign = sent_campaign(db, club)
    person = make_subscriber(db, library)
    urls = [
        f"/campaigns/{campaign.id}/stats",
        f"/campaigns/{campaign.id}/stats/links.csv",
        f"/clubs/{club.id}/trends",
        f"/clubs/{club.id}/interests",
        f"/subscribers/{person.id}/engagement",
    ]
    assert client.get(urls[0]).status_code == 302  # to the log-in page
    for role in (Role.STAFF, Role.EDITOR, Role.ADMIN):
        login(client, make_user(db, library, role))
        for url in urls:
            assert client.get(url).status_code == 200, (role, url)


# ----------------------------------------------------------------- club


def test_trends_list_sent_campaigns_newest_first(staff_client, db, herning):
    club = herning[1]
    for week in range(3):
        sent_campaign(
            db,
            club,
            subject=f"Uge {week + 40}",
            started=STARTED + timedelta(weeks=week),
            delivered=100,
            tracked=50,
            unique_opens_human=10 + week,
            unique_clicks_human=week,
        )
    create_campaign(db.session, club, None, {"kind": "regular", "subject": "Kladde"})
    db.session.commit()
    rows = stats.club_trends(db.session, club, limit=2)
    assert [r.subject for r in rows] == ["Uge 42", "Uge 41"]
    assert rows[0].rates["click_through"] == 0.02

    html = staff_client.get(f"/clubs/{club.id}/trends").get_data(as_text=True)
    assert "Kladde" not in html
    table = html[html.index('id="trend-table"') :]
    assert table.index("Uge 42") < table.index("Uge 41") < table.index("Uge 40")
    assert 'id="chart-trends"' in html and html.count("<circle") == 6

    table = read_csv(staff_client.get(f"/clubs/{club.id}/trends.csv?limit=1"))
    assert len(table) == 2 and table[1][1] == "Uge 42"
    header = table[0]
    assert table[1][header.index("open_rate")] == "0.2400"
    assert staff_client.get(f"/clubs/{club.id}/trends?limit=0").status_code == 400
    for odd in ("x", "²"):
        bad = staff_client.get(f"/clubs/{club.id}/trends?limit={odd}")
        assert bad.status_code == 400 and "limit" in bad.get_data(as_text=True)


def test_interests_sum_peoples_clicks_by_tag(staff_client, db, herning):
    club = herning[1]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    old = sent_campaign(db, club, started=now - timedelta(days=200))
    new = sent_campaign(db, club, started=now - timedelta(days=3))
    old_links = add_links(db, old, (1, "Krimi", "book"))
    new_links = add_links(
        db, new, (1, "Roman", "book"), (2, "Billet", "ticket"), (3, "Mere", None)
    )
    count(db, old, now - timedelta(days=200), 10, old_links[1], uniques=8)
    count(db, new, now - timedelta(days=3), 4, new_links[1], uniques=3)
    count(db, new, now - timedelta(days=3), 6, new_links[2], uniques=6)
    count(db, new, now - timedelta(days=3), 50, new_links[2], reason="known_scanner")
    count(db, new, now - timedelta(days=3), 1, new_links[3], uniques=1)
    count(db, new, now - timedelta(days=3), 9, new_links[0], reason="honeypot_link")

    recent = stats.club_interests(db.session, club, now - timedelta(days=30))
    assert [(r.tag, r.clicks, r.unique_clicks) for r in recent] == [
        ("ticket", 6, 6),
        ("book", 4, 3),
        (None, 1, 1),
    ]
    every = stats.club_interests(db.session, club, None)
    assert every[0].tag == "book" and every[0].clicks == 14

    html = staff_client.get(f"/clubs/{club.id}/interests?days=30").get_data(
        as_text=True
    )
    assert html.index(">ticket<") < html.index(">book<")
    assert 'id="chart-interests"' in html
    table = read_csv(staff_client.get(f"/clubs/{club.id}/interests.csv?days=0"))
    assert table[0] == ["tag", "clicks", "unique_clicks"]
    assert table[1][:3] == ["book", "14", "11"]
    for odd in ("7", "²"):
        bad = staff_client.get(f"/clubs/{club.id}/interests?days={odd}")
        assert bad.status_code == 400 and "days" in bad.get_data(as_text=True)


def interested_member(db, club, campaign, email, consent, clicks):
    """A member with a tracked copy of `campaign` and human clicks on links."""
    person = make_subscriber(db, club.library, email)
    join_club(
        db.session,
        club,
        person,
        source="t",
        consent_given=True,
        tracking_consent=consent,
    )
    when = campaign.started_at + timedelta(hours=1)
    send = SendLog(
        campaign_id=campaign.id,
        subscriber_id=person.id,
        status=SendStatus.SENT,
        sent_at=campaign.started_at,
        tracked=True,
        opened_at=when,
        clicked_at=when if clicks else None,
    )
    db.session.add(send)
    db.session.flush()
    for link in clicks:
        db.session.add(
            TrackEvent(
                campaign_id=campaign.id,
                send_id=send.id,
                link_id=link.id,
                kind=EventKind.CLICK,
                occurred_at=when,
                human=True,
                reason="human",
            )
        )
    db.session.commit()
    return person


# ----------------------------------------------------------------- member


def test_engagement_only_where_the_member_consented(staff_client, db, herning):
    library, club = herning
    other = make_club(db, library, slug="vip", name="VIP-klubben")
    campaign = sent_campaign(db, club)
    vip_campaign = sent_campaign(db, other, subject="VIP")
    links = add_links(db, campaign, (1, "Roman", "book"), (2, "Billet", "ticket"))
    vip_links = add_links(db, vip_campaign, (1, "Hemmelig", "secret-tag"))
    person = interested_member(
        db, club, campaign, "anna@example.dk", True, [links[1], links[1], links[2]]
    )
    join_club(db.session, other, person, source="t", consent_given=True)
    db.session.add(
        SendLog(
            campaign_id=vip_campaign.id,
            subscriber_id=person.id,
            status=SendStatus.SENT,
            tracked=True,
            opened_at=STARTED,
        )
    )
    db.session.flush()
    db.session.add(
        TrackEvent(
            campaign_id=vip_campaign.id,
            send_id=db.session.query(SendLog.id)
            .filter_by(campaign_id=vip_campaign.id)
            .scalar(),
            link_id=vip_links[1].id,
            kind=EventKind.CLICK,
            occurred_at=STARTED,
            human=True,
            reason="human",
        )
    )
    db.session.commit()

    rows = {r.club_name: r for r in stats.member_engagement(db.session, person)}
    debat = rows["Her er debat"]
    assert (debat.received, debat.opened, debat.clicked) == (1, 1, 1)
    assert debat.tags == [("book", 2), ("ticket", 1)]
    assert rows["VIP-klubben"].hidden == "no_consent"

    html = staff_client.get(f"/subscribers/{person.id}/engagement").get_data(
        as_text=True
    )
    assert "did not consent to tracking in this club" in html
    assert "secret-tag" not in html
    vip = html[html.index(f'id="club-{other.id}"') :]
    assert "Last activity" not in vip and "Opened" not in vip
    assert "book</span> 2" in html

    table = read_csv(staff_client.get(f"/subscribers/{person.id}/engagement.csv"))
    assert table[1] == [
        "Her er debat",
        "yes",
        "1",
        "1",
        "1",
        "2026-10-01T09:30:00+00:00",
        "book: 2; ticket: 1",
    ]
    assert table[2] == ["VIP-klubben", "no (no_consent)", "", "", "", "", ""]
    assert "secret-tag" not in str(table)


def test_engagement_hidden_when_the_club_counts_anonymously(db, herning):
    club = herning[1]
    club.tracking_mode = TrackingMode.ANONYMOUS
    campaign = sent_campaign(db, club)
    links = add_links(db, campaign, (1, "Roman", "book"))
    person = interested_member(db, club, campaign, "a@example.dk", True, [links[1]])
    (row,) = stats.member_engagement(db.session, person)
    assert row.hidden == "anonymous" and row.tags == [] and row.clicked is None


def test_subscriber_page_links_to_engagement(staff_client, db, herning):
    person = make_subscriber(db, herning[0])
    html = staff_client.get(f"/subscribers/{person.id}").get_data(as_text=True)
    assert f"/subscribers/{person.id}/engagement" in html


def test_chart_text_is_escaped(staff_client, db, herning):
    club = herning[1]
    sent_campaign(
        db, club, subject='<script>alert("x")</script>', delivered=10, tracked=10
    )
    html = staff_client.get(f"/clubs/{club.id}/trends").get_data(as_text=True)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;: open rate" in html


def test_anonymous_club_interests_show_totals_only(staff_client, db, herning):
    club = herning[1]
    club.tracking_mode = TrackingMode.ANONYMOUS
    campaign = sent_campaign(db, club, started=datetime.now(UTC) - timedelta(days=1))
    links = add_links(db, campaign, (1, "Roman", "book"))
    hour = campaign.started_at.replace(minute=0, second=0, microsecond=0)
    count(db, campaign, hour, 5, links[1], uniques=5)
    html = staff_client.get(f"/clubs/{club.id}/interests").get_data(as_text=True)
    assert "does not track individual members" in html
    assert "Unique clicks" not in html
    assert "<td>5</td></tr>" in html
