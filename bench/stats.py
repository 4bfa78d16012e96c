"""Benchmark: the statistics pages of a club with 1,000,000 sent messages.

    .venv/bin/python bench/stats.py                       # a temporary SQLite file
    .venv/bin/python bench/stats.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/klubpost_bench

The database is migrated first (an empty one gets the whole schema). The run
adds its own library with one club of `--members` (100,000) members who
consented to tracking, `--campaigns` (10) sent campaigns of 8 links and a
honeypot each, a send log row per member and campaign (1,000,000) and
`--events` (3,000,000) raw opens and clicks spread over 30 days (most in the
first two), with human and machine verdicts. Everything is written with bulk
INSERT ... SELECT over a number series, so filling takes seconds, not hours.

The aggregates the pages read (`TrackCount`, `CampaignStats`, the members'
first open and click) are then made by the roll-up itself
(`tracking.rollup.roll_up`, as the scheduler runs it), which also applies its
context rules (honeypot window, scanner bursts) to the generated hits. It
judges hits one by one, so at 3,000,000 events it takes a while;
`--aggregates sql` makes the same counts with GROUP BY and a window function in
seconds (without the context rules), for quick runs of the page timings.

Then, as a logged-in staff user through the app's test client, it requests the
campaign statistics page (of the newest campaign) and the club trend page: one
warm-up, then `--repeat` (7) times each; the median is reported. The figures on
the campaign page are checked against direct counts of the raw data.

The last line printed is one JSON object:
{"campaign_stats_ms": ..., "club_trends_ms": ..., "database": ..., ...}
with, for orientation, the interest page over all time (it counts the members
who clicked each tag from the raw events, the one view that reads them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import bindparam, delete, func, select, text  # noqa: E402

from accounts.models import Library, Role  # noqa: E402
from accounts.services import create_user  # noqa: E402
from bench.common import bench_club  # noqa: E402
from campaigns.models import Campaign, CampaignStatus, SendLog  # noqa: E402
from klubpost import create_app  # noqa: E402
from klubpost.db import UTCDateTime, db  # noqa: E402
from tracking.models import TrackedLink, TrackEvent  # noqa: E402
from tracking.rollup import roll_up  # noqa: E402

PASSWORD = "bench-password"
LINKS = 8
HOURLY = 48 * 3600
MONTH = 30 * 24 * 3600
TAGS = ["book", "article", "ticket", "material", "book", "event", None, "book"]
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def log(message: str) -> None:
    """Progress on stderr; the result goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def _sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def _series(count_param: str) -> str:
    """A FROM clause yielding n = 1..count (PostgreSQL: generate_series)."""
    if _sqlite():
        return (
            "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < :{count_param}) SELECT n FROM s) AS s"
        )
    # bigint: the spreading products below overflow a 32-bit integer.
    return f"generate_series(1, CAST(:{count_param} AS bigint)) AS s(n)"


def _plus_seconds(start_param: str, seconds: str) -> str:
    """SQL for a UTC timestamp `seconds` after a bound start time."""
    if _sqlite():  # stored as SQLAlchemy writes it: "YYYY-MM-DD HH:MM:SS.ffffff"
        return (
            f"strftime('%Y-%m-%d %H:%M:%S.000000', :{start_param}, "
            f"'+' || ({seconds}) || ' seconds')"
        )
    return f"(:{start_param} + ({seconds}) * interval '1 second')"


def _hour_of(column: str) -> str:
    if _sqlite():
        return f"strftime('%Y-%m-%d %H:00:00.000000', {column})"
    return f"(date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


def _timestamp(name: str):
    return bindparam(name, type_=UTCDateTime())


# ------------------------------------------------------------------ data


def populate(members: int, campaigns: int, events: int, tag: str) -> dict:
    """The library, club, members, sent campaigns, send log and raw events."""
    session = db.session
    club = bench_club("stats", tag)
    library = club.library
    user = create_user(
        session,
        email=f"staff.{tag}@bench.example.dk",
        name="Staff",
        password=PASSWORD,
        role=Role.STAFF,
        library=library,
    )
    session.flush()
    started = time.perf_counter()
    _members(library.id, club.id, members)
    log(f"{members} members in {time.perf_counter() - started:.1f} s")
    first_start = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    campaign_ids = []
    for number in range(campaigns):
        when = first_start + timedelta(weeks=number)
        campaign_ids.append(_campaign(library.id, club.id, number, when, members))
        _events(campaign_ids[-1], when, events // campaigns, members)
        session.commit()
        log(f"campaign {number + 1}/{campaigns}: {time.perf_counter() - started:.0f} s")
    return {
        "library_id": library.id,
        "club_id": club.id,
        "campaign_ids": campaign_ids,
        "user_email": user.email,
        "last_event_at": when + timedelta(seconds=MONTH),
    }


def _members(library_id: int, club_id: int, members: int) -> None:
    now = datetime.now(UTC)
    db.session.execute(
        text(
            "INSERT INTO subscriber (library_id, email, email_key, first_name, "
            "last_name, language, attributes, created_at, updated_at) "
            "SELECT :library, 'm' || n || '@bench.example.dk', "
            "'m' || n || '@bench.example.dk', 'Anna', 'Jensen', 'da', '{}', "
            f":now, :now FROM {_series('count')}"
        ).bindparams(_timestamp("now")),
        {"library": library_id, "count": members, "now": now},
    )
    db.session.execute(
        text(
            "INSERT INTO membership (subscriber_id, club_id, status, "
            "tracking_consent, consent_source, submitted_at, confirmed_at, "
            "updated_at) SELECT id, :club, 'confirmed', :yes, 'bench', :now, "
            ":now, :now FROM subscriber WHERE library_id = :library ORDER BY id"
        ).bindparams(_timestamp("now")),
        {"club": club_id, "library": library_id, "now": now, "yes": True},
    )


def _campaign(
    library_id: int, club_id: int, number: int, when: datetime, members: int
) -> int:
    """A sent campaign with its links and one send log row per member."""
    campaign = Campaign(
        library_id=library_id,
        club_id=club_id,
        kind="regular",
        subject=f"Nyhedsbrev {number + 1}",
        template_key="regular-da",
        status=CampaignStatus.SENT,
        started_at=when,
        sent_at=when + timedelta(minutes=20),
    )
    db.session.add(campaign)
    db.session.flush()
    links = [
        TrackedLink(
            campaign_id=campaign.id,
            position=position,
            url=f"https://bench.example.dk/{number}/{position}",
            label=f"Link {position}",
            tag=TAGS[position - 1] if position else None,
            honeypot=position == 0,
        )
        for position in range(LINKS + 1)
    ]
    db.session.add_all(links)
    db.session.flush()
    assert [link.id - links[0].id for link in links] == list(range(LINKS + 1))
    # Most members get it; one in 100 failed, one in 100 bounced.
    db.session.execute(
        text(
            "INSERT INTO send_log (campaign_id, subscriber_id, membership_id, "
            "status, attempts, sent_at, tracked) "
            "SELECT :campaign, subscriber_id, id, CASE WHEN id % 100 = 0 THEN "
            "'failed' WHEN id % 100 = 1 THEN 'bounced' ELSE 'sent' END, 1, "
            ":sent, :yes FROM membership WHERE club_id = :club ORDER BY id"
        ).bindparams(_timestamp("sent")),
        {"campaign": campaign.id, "club": club_id, "sent": when, "yes": True},
    )
    return campaign.id


def _events(campaign_id: int, when: datetime, count: int, members: int) -> None:
    """`count` raw events of one campaign, with deterministic spread and verdicts.

    Send log ids and link ids of one campaign are consecutive (one INSERT
    each, nothing else writing), so a member and a link are an offset from the
    first id.
    """
    first_send, last_send = db.session.execute(
        select(func.min(SendLog.id), func.max(SendLog.id)).where(
            SendLog.campaign_id == campaign_id
        )
    ).one()
    assert last_send - first_send + 1 == members
    honeypot = db.session.scalar(
        select(TrackedLink.id).where(
            TrackedLink.campaign_id == campaign_id, TrackedLink.position == 0
        )
    )
    seconds = (
        f"CASE WHEN (n * 7919) % 100 < 70 THEN (n * 104729) % {HOURLY} "
        f"ELSE {HOURLY} + (n * 1299709) % {MONTH - HOURLY} END"
    )
    db.session.execute(
        text(
            "INSERT INTO track_event (campaign_id, send_id, link_id, kind, "
            "occurred_at, human, reason) "
            "SELECT :campaign, send_id, link_id, kind, "
            f"{_plus_seconds('start', 'secs')}, reason = 'human', reason FROM ("
            "SELECT :first_send + (n * 48271) % :members AS send_id, "
            "CASE WHEN n % 5 < 2 THEN NULL WHEN n % 97 = 0 THEN :honeypot "
            f"ELSE :honeypot + 1 + (n * 31) % {LINKS} END AS link_id, "
            "CASE WHEN n % 5 < 2 THEN 'open' ELSE 'click' END AS kind, "
            f"{seconds} AS secs, "
            "CASE WHEN n % 5 >= 2 AND n % 97 = 0 THEN 'honeypot_link' "
            "WHEN n % 7 = 0 AND n % 5 < 2 THEN 'apple_privacy_proxy' "
            "WHEN n % 7 = 0 THEN 'scanner_burst' "
            "WHEN n % 11 = 0 THEN 'known_scanner' ELSE 'human' END AS reason "
            f"FROM {_series('count')}) AS e"
        ).bindparams(_timestamp("start")),
        {
            "campaign": campaign_id,
            "first_send": first_send,
            "members": members,
            "honeypot": honeypot,
            "count": count,
            "start": when,
        },
    )


# ------------------------------------------------------------------ aggregates


def analyze() -> None:
    """What autovacuum does soon after bulk writes on PostgreSQL; without it the
    planner guesses on tables it believes empty."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            connection.execute(text("ANALYZE"))


def roll_up_all(last_event_at: datetime) -> int:
    """The roll-up, as the scheduler runs it, over every raw event; how many."""
    analyze()
    rolled = roll_up(db.session, now=last_event_at + timedelta(hours=1))
    analyze()
    return rolled


def sql_aggregates(campaign_ids: list[int]) -> int:
    """The same counts as the roll-up, made with GROUP BY and a window function.

    Uniques: the first hit of a member on a link (or first open) per verdict
    class. Far faster than the roll-up, which judges hits one by one, but
    without its context rules: for quick runs of the page timings.
    """
    analyze()
    for campaign_id in campaign_ids:
        _track_counts(campaign_id)
        _firsts(campaign_id)
        _campaign_stats(campaign_id)
        db.session.commit()
    analyze()
    return db.session.scalar(
        select(func.count()).where(TrackEvent.campaign_id.in_(campaign_ids))
    )


def _track_counts(campaign_id: int) -> None:
    hour = _hour_of("occurred_at")
    db.session.execute(
        text(
            "INSERT INTO track_count (campaign_id, link_id, kind, hour, reason, "
            "hits, uniques) "
            f"SELECT campaign_id, link_id, kind, hour, reason, count(*), "
            "sum(CASE WHEN rank = 1 THEN 1 ELSE 0 END) FROM ("
            f"SELECT campaign_id, coalesce(link_id, 0) AS link_id, kind, "
            f"{hour} AS hour, reason, row_number() OVER (PARTITION BY send_id, "
            "coalesce(link_id, 0), kind, human ORDER BY occurred_at, id) AS rank "
            "FROM track_event WHERE campaign_id = :campaign) AS ranked "
            "GROUP BY campaign_id, link_id, kind, hour, reason"
        ),
        {"campaign": campaign_id},
    )


def _firsts(campaign_id: int) -> None:
    for kind, column in (("open", "opened_at"), ("click", "clicked_at")):
        db.session.execute(
            text(
                f"UPDATE send_log SET {column} = f.first FROM (SELECT send_id, "
                "min(occurred_at) AS first FROM track_event WHERE campaign_id = "
                ":campaign AND kind = :kind AND human GROUP BY send_id) AS f "
                "WHERE send_log.id = f.send_id"
            ),
            {"campaign": campaign_id, "kind": kind},
        )


def _campaign_stats(campaign_id: int) -> None:
    """One row of figures: the send log by status, the hits by kind and verdict."""
    db.session.execute(
        text(
            "INSERT INTO campaign_stats (campaign_id, recipients, delivered, failed, "
            "bounced, unsubscribed, tracked, opens_human, opens_machine, "
            "unique_opens_human, unique_opens_machine, clicks_human, "
            "clicks_machine, unique_clicks_human, unique_clicks_machine, "
            "updated_at) SELECT :campaign, s.recipients, s.delivered, s.failed, "
            "s.bounced, 0, s.tracked, h.oh, h.om, h.uoh, h.uom, h.ch, h.cm, "
            "h.uch, h.ucm, :now FROM (SELECT count(*) AS recipients, "
            "sum(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS delivered, "
            "sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed, "
            "sum(CASE WHEN status = 'bounced' THEN 1 ELSE 0 END) AS bounced, "
            "sum(CASE WHEN tracked AND status IN ('sent', 'bounced') THEN 1 "
            "ELSE 0 END) AS tracked FROM send_log WHERE campaign_id = :campaign) "
            "AS s, (SELECT "
            + ", ".join(
                f"coalesce(sum(CASE WHEN kind = '{kind}' AND reason {op} 'human' "
                f"THEN {column} END), 0) AS {alias}"
                for kind, short in (("open", "o"), ("click", "c"))
                for column, unique in (("hits", ""), ("uniques", "u"))
                for op, side in (("=", "h"), ("<>", "m"))
                for alias in [f"{unique}{short}{side}"]
            )
            + " FROM track_count WHERE campaign_id = :campaign) AS h"
        ).bindparams(_timestamp("now")),
        {"campaign": campaign_id, "now": datetime.now(UTC)},
    )
    # As the roll-up counts them: unique clicks are members (copies), not links.
    db.session.execute(
        text(
            "UPDATE campaign_stats SET unique_clicks_human = (SELECT "
            "count(clicked_at) FROM send_log WHERE campaign_id = :campaign), "
            "unique_clicks_machine = (SELECT count(DISTINCT send_id) FROM "
            "track_event WHERE campaign_id = :campaign AND kind = 'click' AND "
            "NOT human) WHERE campaign_id = :campaign"
        ),
        {"campaign": campaign_id},
    )


# ------------------------------------------------------------------ timing


def log_in(client, email: str) -> None:
    """Log in through the real form, as staff do."""
    page = client.get("/login").get_data(as_text=True)
    token = CSRF.search(page).group(1)
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.status_code


def time_page(client, url: str, repeat: int) -> tuple[float, str]:
    """Median milliseconds of `repeat` requests after one warm-up; the last body."""
    body = ""
    timings = []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (url, response.status_code)
        body = response.get_data(as_text=True)
        if attempt:
            timings.append(elapsed)
    return statistics.median(timings), body


def check_campaign_page(html: str, campaign_id: int) -> dict:
    """The page's figures against direct counts of the raw data."""
    delivered = db.session.scalar(
        select(func.count()).where(
            SendLog.campaign_id == campaign_id, SendLog.status == "sent"
        )
    )
    human_clicks = db.session.scalar(
        select(func.count()).where(
            TrackEvent.campaign_id == campaign_id,
            TrackEvent.kind == "click",
            TrackEvent.human.is_(True),
        )
    )
    # Unique clicks: the members (copies) with a click by a person.
    first_clicks = db.session.scalar(
        select(func.count()).select_from(
            select(TrackEvent.send_id)
            .where(
                TrackEvent.campaign_id == campaign_id,
                TrackEvent.kind == "click",
                TrackEvent.human.is_(True),
            )
            .distinct()
            .subquery()
        )
    )
    shown = {
        name: int(re.search(rf'id="{name}">(\d+)<', html).group(1))
        for name in ("fig-delivered", "fig-unique-clicks")
    }
    clicks_row = re.search(r"Clicks</th><td>(\d+)</td>", html)
    assert shown["fig-delivered"] == delivered, (shown, delivered)
    assert shown["fig-unique-clicks"] == first_clicks, (shown, first_clicks)
    assert int(clicks_row.group(1)) == human_clicks, (clicks_row, human_clicks)
    assert html.count('<rect class="bar') > 48  # the chart is drawn
    return {"delivered": delivered, "human_clicks": human_clicks}


def totals(campaign_ids: list[int]) -> dict:
    """How much data the run built (counted, not assumed)."""
    return {
        name: db.session.scalar(
            select(func.count()).where(model.campaign_id.in_(campaign_ids))
        )
        for name, model in (("send_log_rows", SendLog), ("raw_events", TrackEvent))
    }


def main() -> None:
    """Fill, aggregate, time both pages and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--aggregates",
        choices=["roll-up", "sql"],
        default="roll-up",
        help="fill the aggregates with the roll-up (default) or with GROUP BY",
    )
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "ENV": "bench",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    with app.app_context():
        upgrade()
        made = populate(args.members, args.campaigns, args.events, uuid.uuid4().hex[:8])
        try:
            started = time.perf_counter()
            if args.aggregates == "sql":
                rolled = sql_aggregates(made["campaign_ids"])
            else:
                rolled = roll_up_all(made["last_event_at"])
            aggregate_seconds = time.perf_counter() - started
            assert rolled == args.events // args.campaigns * args.campaigns, rolled
            result = measure(app, made, args.repeat)
            result.update(totals(made["campaign_ids"]))
            result["aggregates"] = args.aggregates
            result["aggregate_seconds"] = round(aggregate_seconds, 1)
            result["database"] = db.engine.dialect.name
            result["load_average"] = round(os.getloadavg()[0], 1)
        finally:
            db.session.rollback()
            if args.database_url:  # a temporary file goes as a whole
                cleanup(made["library_id"], made["campaign_ids"])
    print(json.dumps(result), flush=True)


def measure(app, made: dict, repeat: int) -> dict:
    """Time the two pages as a logged-in staff user; check the campaign figures."""
    client = app.test_client()
    log_in(client, made["user_email"])
    newest = made["campaign_ids"][-1]
    campaign_ms, html = time_page(client, f"/campaigns/{newest}/stats", repeat)
    checked = check_campaign_page(html, newest)
    trends_ms, html = time_page(client, f"/clubs/{made['club_id']}/trends", repeat)
    assert html.count('class="dot') == len(made["campaign_ids"]) * 2
    # Not a target, for orientation: the interest view counts members who
    # clicked each tag from the raw events (all time: every event of the club).
    interests_ms, html = time_page(
        client, f"/clubs/{made['club_id']}/interests?days=0", repeat
    )
    assert ">book<" in html
    return {
        "campaign_stats_ms": round(campaign_ms, 1),
        "club_trends_ms": round(trends_ms, 1),
        "club_interests_all_time_ms": round(interests_ms, 1),
        "checked_campaign": checked,
    }


def cleanup(library_id: int, campaign_ids: list[int]) -> None:
    """Delete what the run added: the big tables by campaign first, then the rest."""
    started = time.perf_counter()
    for model in (TrackEvent, SendLog):
        db.session.execute(delete(model).where(model.campaign_id.in_(campaign_ids)))
        db.session.commit()
    db.session.execute(delete(Library).where(Library.id == library_id))
    db.session.commit()
    if db.engine.dialect.name == "postgresql":  # or later runs scan the dead rows
        with db.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            connection.execute(text("VACUUM ANALYZE send_log, track_event"))
    log(f"cleaned up in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
