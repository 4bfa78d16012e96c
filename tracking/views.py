"""Staff pages: a campaign's statistics, a club's trends and interests, a member's
engagement, each with its tables as CSV. Staff, editors and admins may read them.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from accounts.models import Role
from campaigns.models import Campaign
from campaigns.services import library_zone, utc_to_local
from klubpost.auth import get_owned, role_required
from klubpost.db import db, utcnow
from subscribers.csvfiles import csv_download
from subscribers.models import Club, Subscriber
from tracking import exports, stats
from tracking.charts import Series, bar_chart, line_chart
from tracking.models import TrackingMode

bp = Blueprint("stats", __name__)

REASON_LABELS = {
    "human": _l("people"),
    "apple_privacy_proxy": _l("Apple Mail Privacy Protection"),
    "google_image_proxy": _l("Gmail image proxy"),
    "yahoo_image_proxy": _l("Yahoo image proxy"),
    "head_request": _l("HEAD request (never a person)"),
    "no_user_agent": _l("no browser named"),
    "known_scanner": _l("known security scanner"),
    "scanner_burst": _l("several links within seconds"),
    "honeypot_link": _l("hidden link no person sees"),
    "too_soon_after_sending": _l("seconds after delivery"),
}
HIDDEN_LABELS = {
    "no_consent": _l("This member did not consent to tracking in this club."),
    "anonymous": _l("This club counts opens and clicks anonymously."),
    "off": _l("This club does not track opens and clicks."),
}


@bp.app_template_filter("percent")
def percent(value: float | None) -> str:
    """A rate as a percentage with one decimal, or a dash when unknown."""
    return "–" if value is None else f"{value * 100:.1f} %"


@bp.app_template_global()
def reason_label(reason: str) -> str:
    """A verdict reason in the page's language (unknown rules by their name)."""
    label = REASON_LABELS.get(reason)
    return str(label) if label else reason


# ----------------------------------------------------------------- campaign


@bp.get("/campaigns/<int:campaign_id>/stats")
@role_required(Role.STAFF)
def campaign_stats(campaign_id: int):
    """A campaign's figures, links, machine reasons and clicks over time."""
    campaign = get_owned(Campaign, campaign_id)
    zone = library_zone(campaign.library)
    timeline = stats.clicks_over_time(db.session, campaign, zone)
    return render_template(
        "tracking/campaign.html",
        campaign=campaign,
        club=campaign.club,
        zone=zone,
        summary=stats.campaign_summary(db.session, campaign),
        links=stats.link_table(db.session, campaign.id),
        reasons=stats.reason_table(db.session, campaign.id),
        timeline=timeline,
        hourly_chart=_timeline_chart(
            _("Clicks per hour, first two days"), timeline.hourly
        ),
        daily_chart=_timeline_chart(_("Clicks per day after that"), timeline.daily),
    )


def _timeline_chart(title: str, buckets: list[stats.Bucket]) -> Markup | None:
    if not buckets:
        return None
    human = [b.human for b in buckets]
    machine = [b.machine for b in buckets]
    return bar_chart(
        title,
        [b.label for b in buckets],
        [Series(_("people"), human), Series(_("machines"), machine)],
        summary=_(
            "%(human)d clicks by people and %(machine)d by machines.",
            human=sum(human),
            machine=sum(machine),
        ),
        ticks=[b.tick for b in buckets],
    )


@bp.get("/campaigns/<int:campaign_id>/stats/summary.csv")
@role_required(Role.STAFF)
def summary_csv(campaign_id: int):
    """The campaign's figures and rates as CSV."""
    campaign = get_owned(Campaign, campaign_id)
    summary = stats.campaign_summary(db.session, campaign)
    return csv_download(
        exports.summary_rows(summary), f"campaign-{campaign.id}-summary.csv"
    )


@bp.get("/campaigns/<int:campaign_id>/stats/links.csv")
@role_required(Role.STAFF)
def links_csv(campaign_id: int):
    """The campaign's links and their clicks as CSV."""
    campaign = get_owned(Campaign, campaign_id)
    links = stats.link_table(db.session, campaign.id)
    return csv_download(exports.link_rows(links), f"campaign-{campaign.id}-links.csv")


@bp.get("/campaigns/<int:campaign_id>/stats/timeline.csv")
@role_required(Role.STAFF)
def timeline_csv(campaign_id: int):
    """The campaign's clicks over time as CSV."""
    campaign = get_owned(Campaign, campaign_id)
    zone = library_zone(campaign.library)
    timeline = stats.clicks_over_time(db.session, campaign, zone)
    return csv_download(
        exports.timeline_rows(timeline), f"campaign-{campaign.id}-clicks-over-time.csv"
    )


@bp.get("/campaigns/<int:campaign_id>/stats/reasons.csv")
@role_required(Role.STAFF)
def reasons_csv(campaign_id: int):
    """The campaign's opens and clicks per verdict reason as CSV."""
    campaign = get_owned(Campaign, campaign_id)
    reasons = stats.reason_table(db.session, campaign.id)
    return csv_download(
        exports.reason_rows(reasons), f"campaign-{campaign.id}-reasons.csv"
    )


# ----------------------------------------------------------------- club


def trends_limit() -> int:
    """The `limit` query parameter of the trends page (400 if out of range)."""
    raw = request.args.get("limit", "")
    if raw == "":
        return stats.DEFAULT_TRENDS
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= stats.MAX_TRENDS:
        abort(
            400,
            description=_(
                "Show from 1 to %(most)d newsletters (limit).", most=stats.MAX_TRENDS
            ),
        )
    return int(raw)


@bp.get("/clubs/<int:club_id>/trends")
@role_required(Role.STAFF)
def club_trends(club_id: int):
    """How the club's newsletters did, campaign after campaign."""
    club = get_owned(Club, club_id)
    limit = trends_limit()
    rows = stats.club_trends(db.session, club, limit)
    zone = library_zone(club.library)
    return render_template(
        "tracking/trends.html",
        club=club,
        rows=rows,
        limit=limit,
        zone=zone,
        chart=_trends_chart(rows, zone) if rows else None,
    )


def _trends_chart(rows: list[stats.TrendRow], zone: str) -> Markup:
    oldest_first = rows[::-1]
    return line_chart(
        _("Opens and clicks per newsletter"),
        [r.subject or _("(no subject)") for r in oldest_first],
        [
            Series(_("open rate"), [r.rates["open_rate"] for r in oldest_first]),
            Series(
                _("click-through rate"),
                [r.rates["click_through"] for r in oldest_first],
            ),
        ],
        summary=_("The last %(count)d newsletters, oldest first.", count=len(rows)),
        percent=True,
        ticks=[f"{utc_to_local(r.started_at, zone):%m-%d}" for r in oldest_first],
    )


@bp.get("/clubs/<int:club_id>/trends.csv")
@role_required(Role.STAFF)
def trends_csv(club_id: int):
    """The club's trends as CSV."""
    club = get_owned(Club, club_id)
    rows = stats.club_trends(db.session, club, trends_limit())
    return csv_download(exports.trend_rows(rows), f"{club.slug}-trends.csv")


def interest_days() -> int:
    """The `days` query parameter of the interest page (400 unless offered)."""
    raw = request.args.get("days", "")
    if raw == "":
        return stats.PERIODS[1]
    if not (raw.isascii() and raw.isdigit()) or int(raw) not in stats.PERIODS:
        abort(
            400,
            description=_(
                "Choose a period of 30, 90 or 365 days, or 0 for all time (days)."
            ),
        )
    return int(raw)


@bp.get("/clubs/<int:club_id>/interests")
@role_required(Role.STAFF)
def club_interests(club_id: int):
    """What the club's members click: people's clicks by link tag."""
    club = get_owned(Club, club_id)
    days = interest_days()
    since = stats.period_start(days, utcnow())
    rows = stats.club_interests(db.session, club, since)
    chart = None
    if rows:
        chart = bar_chart(
            _("Clicks by people, by tag"),
            [r.tag or _("untagged") for r in rows],
            [Series(_("clicks"), [r.clicks for r in rows])],
            summary=_("%(count)d tags.", count=len(rows)),
        )
    return render_template(
        "tracking/interests.html",
        club=club,
        rows=rows,
        days=days,
        periods=stats.PERIODS,
        chart=chart,
        individual=club.tracking_mode == TrackingMode.INDIVIDUAL,
    )


@bp.get("/clubs/<int:club_id>/interests.csv")
@role_required(Role.STAFF)
def interests_csv(club_id: int):
    """The club's interests as CSV."""
    club = get_owned(Club, club_id)
    days = interest_days()
    rows = stats.club_interests(db.session, club, stats.period_start(days, utcnow()))
    return csv_download(
        exports.interest_rows(rows), f"{club.slug}-interests-{days or 'all'}.csv"
    )


# ----------------------------------------------------------------- member


@bp.get("/subscribers/<int:subscriber_id>/engagement")
@role_required(Role.STAFF)
def engagement(subscriber_id: int):
    """A member's engagement per club, where they consented to tracking."""
    person = get_owned(Subscriber, subscriber_id)
    return render_template(
        "tracking/engagement.html",
        person=person,
        rows=stats.member_engagement(db.session, person),
        hidden_labels=HIDDEN_LABELS,
        zone=library_zone(person.library),
    )


@bp.get("/subscribers/<int:subscriber_id>/engagement.csv")
@role_required(Role.STAFF)
def engagement_csv(subscriber_id: int):
    """A member's engagement as CSV."""
    person = get_owned(Subscriber, subscriber_id)
    rows = stats.member_engagement(db.session, person)
    return csv_download(
        exports.engagement_rows(rows), f"subscriber-{person.id}-engagement.csv"
    )
