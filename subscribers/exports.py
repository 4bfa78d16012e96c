"""A club's members as CSV rows, read in keyset-paginated batches.

A club may have hundreds of thousands of members: never load them at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from subscribers.models import ConsentText, Membership, MembershipStatus, Subscriber

BATCH = 1000
FIXED_COLUMNS = [
    "email",
    "first_name",
    "last_name",
    "language",
    "status",
    "tracking_consent",
    "consent_source",
    "consent_text_version",
    "submitted_at",
    "confirmed_at",
    "unsubscribed_at",
]


def export_rows(session: Session, club_id: int, batch: int = BATCH) -> Iterator[list]:
    """The header, then one row per membership of the club, by status, oldest first."""
    names = attribute_names(session, club_id, batch)
    yield FIXED_COLUMNS + [f"attribute:{n}" if n in FIXED_COLUMNS else n for n in names]
    stmt = (
        select(
            Membership.id,
            Subscriber.email,
            Subscriber.first_name,
            Subscriber.last_name,
            Subscriber.language,
            Membership.status,
            Membership.tracking_consent,
            Membership.consent_source,
            ConsentText.version,
            Membership.submitted_at,
            Membership.confirmed_at,
            Membership.unsubscribed_at,
            Subscriber.attributes,
        )
        .join(Subscriber, Subscriber.id == Membership.subscriber_id)
        .outerjoin(ConsentText, ConsentText.id == Membership.consent_text_id)
        .where(Membership.club_id == club_id)
    )
    for row in _keyset(session, stmt, batch):
        attributes = row.attributes or {}
        yield [
            row.email,
            row.first_name,
            row.last_name,
            row.language,
            row.status.value,
            "yes" if row.tracking_consent else "no",
            row.consent_source,
            "" if row.version is None else str(row.version),
            _iso(row.submitted_at),
            _iso(row.confirmed_at),
            _iso(row.unsubscribed_at),
            *(attributes.get(n, "") for n in names),
        ]


def attribute_names(session: Session, club_id: int, batch: int = BATCH) -> list[str]:
    """Every attribute name used by the club's members, sorted."""
    names: set[str] = set()
    stmt = (
        select(Membership.id, Subscriber.attributes)
        .join(Subscriber, Subscriber.id == Membership.subscriber_id)
        .where(Membership.club_id == club_id)
    )
    for row in _keyset(session, stmt, batch):
        names.update(row.attributes or {})
    return sorted(names)


def _keyset(session: Session, stmt, batch: int) -> Iterator:
    """The statement's rows, status by status, `batch` at a time by id.

    Pages follow the (club_id, status, id) index: each page is one index range,
    however large the club.
    """
    for status in MembershipStatus:
        last_id = 0
        while rows := session.execute(
            stmt.where(Membership.status == status, Membership.id > last_id)
            .order_by(Membership.id)
            .limit(batch)
        ).all():
            yield from rows
            last_id = rows[-1].id


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""
