"""JSON API for the statistics: the same figures as the staff pages.

Token-authenticated like the rest of /api; staff and above may read. Another
library's campaign, club or subscriber is a 404. Times are UTC; rates are
fractions (see tracking/stats.py for how each is computed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify, request
from flask_babel import gettext as _

from accounts.models import Role
from campaigns.models import Campaign
from campaigns.services import library_zone
from klubpost import jsonapi
from klubpost.db import db, utcnow
from klubpost.errors import ApiError
from klubpost.openapi import describe
from klubpost.security import csrf
from subscribers.models import Club, Subscriber
from tracking import stats

bp = Blueprint("stats_api", __name__, url_prefix="/api")
# Token-authenticated and cookie-free, so cross-site request forgery cannot apply.
csrf.exempt(bp)


@bp.before_request
def authenticate():
    """Every call needs a valid, unrevoked personal token of a staff user."""
    jsonapi.authenticate()
    jsonapi.require_role(Role.STAFF)


def _owned(model: type, object_id: int, what: str) -> Any:
    obj = jsonapi.get_by_id(model, object_id)
    message = _("There is no such %(what)s.", what=what)
    return jsonapi.found(obj, obj.library_id if obj else None, message)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _bucket(bucket: stats.Bucket) -> dict[str, Any]:
    return {
        "start": _iso(bucket.start),
        "label": bucket.label,
        "human": bucket.human,
        "machine": bucket.machine,
    }


@bp.get("/campaigns/<int:campaign_id>/stats")
@describe("A campaign's statistics", role="staff", response="CampaignStatistics")
def campaign_stats(campaign_id: int):
    """Figures, rates, links, verdict reasons and clicks over time of a campaign."""
    campaign = _owned(Campaign, campaign_id, _("campaign"))
    summary = stats.campaign_summary(db.session, campaign)
    zone = library_zone(campaign.library)
    timeline = stats.clicks_over_time(db.session, campaign, zone)
    links = stats.link_table(db.session, campaign.id)
    return jsonify(
        {
            "campaign_id": campaign.id,
            "subject": campaign.subject,
            "started_at": _iso(campaign.started_at),
            "updated_at": _iso(summary.updated_at),
            "anonymous": summary.anonymous,
            "figures": summary.figures,
            "rates": summary.rates,
            "links": [
                {
                    "id": link.link_id,
                    "position": link.position,
                    "label": link.label,
                    "tag": link.tag,
                    "url": link.url,
                    "clicks_human": link.clicks_human,
                    "clicks_machine": link.clicks_machine,
                    "unique_clicks_human": link.unique_clicks_human,
                    "unique_clicks_machine": link.unique_clicks_machine,
                }
                for link in links
            ],
            "reasons": [
                {"reason": r.reason, "opens": r.opens, "clicks": r.clicks}
                for r in stats.reason_table(db.session, campaign.id)
            ],
            "timeline": {
                "timezone": zone,
                "hourly": [_bucket(b) for b in timeline.hourly],
                "daily": [_bucket(b) for b in timeline.daily],
            },
        }
    )


@bp.get("/clubs/<int:club_id>/trends")
@describe(
    "A club's trends across campaigns",
    role="staff",
    response="StatsTrendList",
    query={
        "limit": {
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": stats.MAX_TRENDS,
                "default": stats.DEFAULT_TRENDS,
            },
            "description": "How many of the newest sent campaigns",
        }
    },
)
def club_trends(club_id: int):
    """The club's newest sent campaigns with their figures and rates."""
    club = _owned(Club, club_id, _("club"))
    limit = jsonapi.int_arg("limit", stats.DEFAULT_TRENDS, 1, stats.MAX_TRENDS)
    rows = stats.club_trends(db.session, club, limit)
    return jsonify(
        {
            "anonymous": stats.counts_anonymously(club),
            "items": [
                {
                    "campaign_id": row.campaign_id,
                    "subject": row.subject,
                    "started_at": _iso(row.started_at),
                    "figures": row.figures,
                    "rates": row.rates,
                }
                for row in rows
            ],
        }
    )


def _days() -> int:
    raw = request.args.get("days", "")
    if raw == "":
        return stats.PERIODS[1]
    if not (raw.isascii() and raw.isdigit()) or int(raw) not in stats.PERIODS:
        raise ApiError(
            422,
            "invalid",
            _("Choose a period of 30, 90 or 365 days, or 0 for all time (days)."),
            "days",
        )
    return int(raw)


@bp.get("/clubs/<int:club_id>/interests")
@describe(
    "A club's interests: people's clicks by link tag",
    role="staff",
    response="StatsInterestList",
    query={
        "days": {
            "schema": {"type": "integer", "enum": list(stats.PERIODS), "default": 90},
            "description": "Look back 30, 90 or 365 days; 0 for all time",
        }
    },
)
def club_interests(club_id: int):
    """Human clicks by link tag in the club's newsletters over a period."""
    club = _owned(Club, club_id, _("club"))
    days = _days()
    rows = stats.club_interests(db.session, club, stats.period_start(days, utcnow()))
    return jsonify(
        {
            "days": days,
            "items": [
                {
                    "tag": row.tag,
                    "clicks": row.clicks,
                    "unique_clicks": row.unique_clicks,
                }
                for row in rows
            ],
        }
    )


@bp.get("/subscribers/<int:subscriber_id>/engagement")
@describe(
    "A member's engagement per club", role="staff", response="StatsEngagementList"
)
def engagement(subscriber_id: int):
    """Per club: what the member received, opened and clicked, where they consented."""
    person = _owned(Subscriber, subscriber_id, _("subscriber"))
    return jsonify(
        {
            "items": [
                {
                    "club_id": row.club_id,
                    "club_name": row.club_name,
                    "hidden": row.hidden,
                    "received": row.received,
                    "opened": row.opened,
                    "clicked": row.clicked,
                    "last_activity": _iso(row.last_activity),
                    "tags": [{"tag": t, "clicks": c} for t, c in row.tags],
                }
                for row in stats.member_engagement(db.session, person)
            ]
        }
    )
