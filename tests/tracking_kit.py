"""Shared set-up of the tracking tests: a club, a campaign with links, its send."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import select

from campaigns import sending
from campaigns.models import Campaign, CampaignKind, ScheduleMode, SendLog
from campaigns.rendering import builtin_templates
from conftest import make_subscriber
from subscribers.models import Club, Membership
from subscribers.services import join_club
from tracking.models import TrackedLink, TrackEvent

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)
BLOCKS = [
    {"type": "text", "heading": "Hej", "text": "Vi ses på biblioteket."},
    {"type": "button", "label": "Se programmet", "url": "https://b.example/program"},
    {
        "type": "links",
        "title": "Læseliste",
        "links": [
            {"label": "En bog", "url": "https://b.example/bog?id=1&s=2", "tag": "book"},
            {"label": "En artikel", "url": "https://b.example/artikel", "track": False},
            {"label": "Skriv til os", "url": "mailto:debat@herning.example.dk"},
            {"label": "Foredrag", "url": "https://b.example/foredrag", "tag": "talk"},
        ],
    },
]
TRACKED_URLS = [
    "https://b.example/program",
    "https://b.example/bog?id=1&s=2",
    "https://b.example/foredrag",
]
PLAIN_URLS = ["https://b.example/artikel", "mailto:debat@herning.example.dk"]
CLICK_URL = re.compile(r"http://klubpost\.test(/c/[A-Za-z0-9_.\-]+)")
PIXEL_URL = re.compile(r"http://klubpost\.test(/o/[A-Za-z0-9_.\-]+\.gif)")


def make_tracked_campaign(db, club: Club, **kw) -> Campaign:
    """A regular newsletter of `club` with tracked, excluded and mailto links."""
    key = next(
        t.key
        for t in builtin_templates()
        if t.kind == "regular" and t.language == club.language
    )
    fields = dict(
        library_id=club.library_id,
        club_id=club.id,
        kind=CampaignKind.REGULAR,
        subject="Nyt fra debatklubben",
        preheader="Klima og kunst",
        template_key=key,
        blocks=BLOCKS,
    )
    fields.update(kw)
    campaign = Campaign(**fields)
    db.session.add(campaign)
    db.session.commit()
    return campaign


def add_member(db, club: Club, name: str, *, tracking: bool) -> Membership:
    """A confirmed member, with or without consent to tracking."""
    subscriber = make_subscriber(
        db, club.library, f"{name}@example.dk", first_name=name.title()
    )
    membership = join_club(
        db.session,
        club,
        subscriber,
        source="test",
        consent_given=True,
        tracking_consent=tracking,
    )
    db.session.commit()
    return membership


def start(db, campaign: Campaign, now: datetime | None = None) -> None:
    """Start sending the campaign now (the audience and links are fixed)."""
    now = now or datetime.now(UTC)
    sending.schedule(campaign, ScheduleMode.NOW, now=now)
    db.session.commit()
    assert sending.start_due(db.session, now=now) == [campaign.id]


def send_log(db, campaign: Campaign, membership: Membership) -> SendLog:
    """The member's send-log row of the campaign."""
    return db.session.scalar(
        select(SendLog).filter_by(
            campaign_id=campaign.id, subscriber_id=membership.subscriber_id
        )
    )


def links_of(db, campaign: Campaign) -> list[TrackedLink]:
    """The campaign's stored links, honeypot first."""
    return db.session.scalars(
        select(TrackedLink)
        .filter_by(campaign_id=campaign.id)
        .order_by(TrackedLink.position)
    ).all()


def signer():
    """The app's tracking token signer."""
    return current_app.extensions["klubpost_tracking"].signer


def flush() -> int:
    """Write the recorder's buffered hits now."""
    return current_app.extensions["klubpost_tracking"].recorder.flush()


def events(db, campaign: Campaign | None = None) -> list[TrackEvent]:
    """The raw events (of a campaign), oldest first."""
    query = select(TrackEvent).order_by(TrackEvent.id)
    if campaign is not None:
        query = query.filter_by(campaign_id=campaign.id)
    db.session.expire_all()
    return db.session.scalars(query).all()
