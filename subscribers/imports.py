"""Importing members into a club in bulk (from CSV files and the API).

`import_records` does the work for one batch with a handful of set-based queries:
it never loads a club's whole membership. The CSV job runner feeds it batches and
commits each batch together with the job's progress, so a crash leaves the job at
an exact row count from which it resumes: no half-done state.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload

from klubpost.db import utcnow
from subscribers.csvfiles import (
    CsvProblem,
    check_roles,
    decode_as,
    guess_roles,
    read_upload,
    reader,
)
from subscribers.models import (
    LANGUAGES,
    Club,
    ImportIssue,
    ImportJob,
    ImportStatus,
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

log = logging.getLogger("klubpost.imports")

BATCH_ROWS = 5000
LEASE_SECONDS = 60

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
    # New unconfirmed memberships, which need a confirmation mail.
    unconfirmed_ids: list[int] = field(default_factory=list)

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
        report.unconfirmed_ids = _insert_memberships(
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
            address, key = fast_normalize_email(record.email)
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
) -> list[int]:
    """Insert the memberships; return the ids of unconfirmed ones (to be mailed)."""
    confirmed = consent_given or not club.double_opt_in
    consent_text_id = current_consent_text(club).id
    stmt = insert(Membership)
    if not confirmed:
        stmt = stmt.returning(Membership.id)
    result = session.execute(
        stmt,
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
    return [] if confirmed else list(result.scalars())


# ---------------------------------------------------------------- addresses, fast

# An unquoted ASCII local part (RFC 5322 dot-atom), as email-validator accepts it.
_DOT_ATOM = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)


def fast_normalize_email(raw: str) -> tuple[str, str]:
    """`normalize_email` with the domain check cached per domain.

    Full validation costs tens of microseconds an address, most of it in the
    domain; a file repeats a few domains. Plain addresses (ASCII dot-atom local
    part, ASCII domain) are checked here with the same rules; anything else goes
    through email-validator in full, so it is refused with the same message.
    """
    raw = (raw or "").strip()
    local, at, domain = raw.rpartition("@")
    if (
        at
        and len(local) <= 64
        and len(raw) <= 254
        and domain.isascii()
        and _DOT_ATOM.match(local)
    ):
        good_domain = _checked_domain(domain)
        if good_domain is not None:
            address = f"{local}@{good_domain}"
            return address, address.lower()
    return normalize_email(raw)


@functools.lru_cache(maxsize=65536)
def _checked_domain(domain: str) -> str | None:
    """The normalised domain if email-validator accepts it, else None."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


# ---------------------------------------------------------------- CSV jobs


class ImportRefused(SubscriberError):
    """An upload or mapping that cannot become an import; the message says why."""

    code = "import_refused"


def create_job(
    session: Session,
    club: Club,
    *,
    filename: str,
    content: bytes,
    created_by_id: int | None = None,
    encoding: str = "auto",
    delimiter: str = "auto",
) -> ImportJob:
    """Store an uploaded file as a job waiting for its column mapping."""
    try:
        parsed = read_upload(
            content, encoding, delimiter, current_app.config["IMPORT_MAX_ROWS"]
        )
    except CsvProblem as exc:
        raise ImportRefused(exc.message, "file") from exc
    job = ImportJob(
        club_id=club.id,
        created_by_id=created_by_id,
        filename=(filename or "members.csv")
        .replace("\\", "/")
        .rsplit("/", 1)[-1][:255],
        content=content,
        encoding=parsed.encoding,
        delimiter=parsed.delimiter,
        columns=parsed.columns,
        total_rows=parsed.total_rows,
        mapping={"roles": guess_roles(parsed.columns)},
        status=ImportStatus.UPLOADED,
    )
    session.add(job)
    session.flush()
    return job


def reread_job(session: Session, job: ImportJob, encoding: str, delimiter: str) -> None:
    """Read a waiting job's file again with another encoding or separator."""
    _require_status(job, ImportStatus.UPLOADED)
    try:
        parsed = read_upload(
            job.content, encoding, delimiter, current_app.config["IMPORT_MAX_ROWS"]
        )
    except CsvProblem as exc:
        raise ImportRefused(exc.message, "file") from exc
    job.encoding, job.delimiter = parsed.encoding, parsed.delimiter
    job.columns, job.total_rows = parsed.columns, parsed.total_rows
    job.mapping = {"roles": guess_roles(parsed.columns)}
    session.flush()


def queue_job(
    session: Session, job: ImportJob, roles: list[str], consent_given: bool
) -> None:
    """Save the column mapping and the consent answer; the runner takes it from here."""
    _require_status(job, ImportStatus.UPLOADED)
    try:
        check_roles(roles, job.columns)
    except CsvProblem as exc:
        raise ImportRefused(exc.message, "mapping") from exc
    job.mapping = {"roles": roles}
    job.consent_given = consent_given
    job.status = ImportStatus.QUEUED
    session.flush()


def _require_status(job: ImportJob, status: ImportStatus) -> None:
    if job.status != status:
        raise ImportRefused(
            _("This import has already been started; upload the file again."),
            "status",
        )


def job_records(job: ImportJob) -> Iterator[ImportRecord]:
    """The job's rows as ImportRecords, in file order."""
    roles = job.mapping["roles"]
    email = roles.index("email")
    first = roles.index("first_name") if "first_name" in roles else None
    last = roles.index("last_name") if "last_name" in roles else None
    language = roles.index("language") if "language" in roles else None
    attributes = [(job.columns[i], i) for i, r in enumerate(roles) if r == "attribute"]
    width = len(roles)
    for number, fields in reader(decode_as(job.content, job.encoding), job.delimiter):
        if number == 1:
            continue
        if len(fields) < width:
            fields = fields + [""] * (width - len(fields))
        yield ImportRecord(
            number,
            fields[email],
            fields[first].strip() if first is not None else "",
            fields[last].strip() if last is not None else "",
            _language(fields, language),
            False,
            {name: v for name, i in attributes if (v := fields[i].strip())},
        )


def _language(fields: list[str], index: int | None) -> str | None:
    if index is None:
        return None
    return fields[index].strip().lower() or None


# ---------------------------------------------------------------- the runner


def run_pending_imports(
    session: Session, *, now: datetime | None = None, batch_rows: int | None = None
) -> int:
    """Process queued CSV imports (and take over abandoned ones); returns how many.

    Each batch commits its members, its report rows and the job's progress in one
    transaction, so after a crash the job resumes exactly where it stood.
    """
    worked = 0
    while True:
        claimed = claim_job(session, now)
        if claimed is None:
            return worked
        batch = batch_rows or current_app.config.get("IMPORT_BATCH_ROWS", BATCH_ROWS)
        process_job(session, *claimed, batch_rows=batch)
        worked += 1


def _lease_seconds() -> int:
    return current_app.config.get("IMPORT_LEASE_SECONDS", LEASE_SECONDS)


def claim_job(session: Session, now: datetime | None = None) -> tuple[int, str] | None:
    """Take the oldest queued job, or a running one whose runner's lease ran out."""
    now = now or utcnow()
    lease = timedelta(seconds=_lease_seconds())
    claimable = or_(
        ImportJob.status == ImportStatus.QUEUED,
        and_(
            ImportJob.status == ImportStatus.RUNNING,
            ImportJob.lease_expires_at < now,
        ),
    )
    # SKIP LOCKED: concurrent runners on PostgreSQL each get another job at once.
    row = session.execute(
        select(ImportJob.id, ImportJob.status, ImportJob.started_at)
        .where(claimable)
        .order_by(ImportJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        session.rollback()
        return None
    owner = uuid.uuid4().hex
    taken_over = row.status == ImportStatus.RUNNING
    values: dict[str, Any] = {
        "status": ImportStatus.RUNNING,
        "lease_owner": owner,
        "lease_expires_at": now + lease,
        "started_at": row.started_at or now,
    }
    if taken_over:
        values["resumptions"] = ImportJob.resumptions + 1
    # Compare-and-set: on SQLite (no row locks) only one runner's UPDATE matches.
    claimed = session.execute(
        update(ImportJob)
        .where(ImportJob.id == row.id, claimable)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    if not claimed:
        return None
    if taken_over:
        log.warning("import %s: taking over from a runner that stopped", row.id)
    return row.id, owner


def process_job(
    session: Session, job_id: int, owner: str, *, batch_rows: int = BATCH_ROWS
) -> None:
    """Import a claimed job's remaining rows, one committed batch at a time."""
    job = session.get(ImportJob, job_id)
    club = job.club
    records = job_records(job)
    seen: set[str] = set()
    done = job.processed_rows
    counts = Counter(job.counts or {})
    if done:
        # Rows before the checkpoint are in; only their addresses are needed
        # again, so later duplicates of them are still reported as duplicates.
        _validate(islice(records, done), club, ImportReport(), seen)
    try:
        while batch := list(islice(records, batch_rows)):
            if not _renew_lease(session, job_id, owner):
                session.rollback()
                log.warning("import %s: lease lost; another runner has it", job_id)
                return
            report = import_records(
                session,
                club,
                batch,
                consent_given=job.consent_given,
                source=f"import:{job_id}",
                seen=seen,
                job_id=job_id,
            )
            counts.update(report.counts)
            if report.unconfirmed_ids:
                counts["mails_queued"] += queue_confirmations(
                    session, report.unconfirmed_ids
                )
            done += len(batch)
            session.execute(
                update(ImportJob)
                .where(ImportJob.id == job_id)
                .values(processed_rows=done, counts=dict(counts))
                .execution_options(synchronize_session=False)
            )
            session.commit()
    except Exception as exc:
        session.rollback()
        log.exception("import %s failed", job_id)
        _finish(session, job_id, owner, ImportStatus.FAILED, str(exc)[:2000])
        return
    _finish(session, job_id, owner, ImportStatus.DONE, None)


def _renew_lease(session: Session, job_id: int, owner: str) -> bool:
    """Extend our lease; False if another runner has taken the job over.

    On PostgreSQL this also locks the job's row until the batch commits, so no
    other runner can take the job over halfway through a batch.
    """
    lease = timedelta(seconds=_lease_seconds())
    return bool(
        session.execute(
            update(ImportJob)
            .where(
                ImportJob.id == job_id,
                ImportJob.lease_owner == owner,
                ImportJob.status == ImportStatus.RUNNING,
            )
            .values(lease_expires_at=utcnow() + lease)
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def _finish(
    session: Session, job_id: int, owner: str, status: ImportStatus, error: str | None
) -> None:
    session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.lease_owner == owner)
        .values(
            status=status,
            error=error,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def queue_confirmations(session: Session, membership_ids: list[int]) -> int:
    """Queue a confirmation mail for each of these new members (no sending here)."""
    from subscribers.mails import queue_confirmation

    memberships = session.scalars(
        select(Membership)
        .where(Membership.id.in_(membership_ids))
        .options(selectinload(Membership.subscriber), selectinload(Membership.club))
        .order_by(Membership.id)
    ).all()
    for membership in memberships:
        queue_confirmation(session, membership)
    return len(memberships)
