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
from datetime import UTC, datetime, timedelta
from itertools import islice
from json.encoder import encode_basestring_ascii
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import (
    and_,
    any_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
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
    Suppression,
)
from subscribers.services import (
    MAX_ATTRIBUTE_LENGTH,
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
    # Set by readers whose attribute names were checked once for all rows and
    # whose values are stripped texts: only their lengths need checking.
    attribute_names_checked: bool = False


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
                Subscriber.library_id == library_id,
                one_of(session, Subscriber.email_key, keys),
            )
        ).all()
    )
    statuses = (
        dict(
            session.execute(
                select(Membership.subscriber_id, Membership.status).where(
                    Membership.club_id == club.id,
                    one_of(session, Membership.subscriber_id, list(existing.values())),
                )
            ).all()
        )
        if existing
        else {}
    )
    suppressed = _suppressed(
        session, library_id, [k for k in keys if k not in existing]
    )

    new_people: list[tuple] = []
    joining: list[tuple[str, ImportRecord]] = []
    now = utcnow()
    db_now = _db_datetime(session, now)
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
                (
                    library_id,
                    address,
                    key,
                    record.first_name,
                    record.last_name,
                    language,
                    _json_object(attributes),
                    db_now,
                    db_now,
                )
            )
        joining.append((key, record))

    if new_people:
        before = _max_id(session, Subscriber)
        bulk_insert(session, Subscriber, SUBSCRIBER_COLUMNS, new_people)
        # Ids are handed out in increasing order: ours are all above `before`
        # (anything else found there belongs to other addresses, not used).
        existing.update(
            session.execute(
                select(Subscriber.email_key, Subscriber.id).where(
                    Subscriber.library_id == library_id, Subscriber.id > before
                )
            ).all()
        )
    if joining:
        report.unconfirmed_ids = _insert_memberships(
            session, club, joining, existing, consent_given, source, job_id, db_now
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
            attributes = record.attributes
            if not record.attribute_names_checked:
                attributes = clean_attributes(attributes)
            elif (
                attributes and max(map(len, attributes.values())) > MAX_ATTRIBUTE_LENGTH
            ):
                attributes = clean_attributes(attributes)  # raises, naming it
        except SubscriberError as exc:
            report.add_issue(record, INVALID_ROW, exc.message)
            continue
        seen.add(key)
        valid[key] = (address, record, language, attributes)
    return valid


def _json_object(attributes: dict[str, str]) -> str:
    """json.dumps of a flat mapping of texts, without its per-call set-up cost."""
    if not attributes:
        return "{}"
    quote = encode_basestring_ascii
    return (
        "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in attributes.items()) + "}"
    )


def _insert_memberships(
    session: Session,
    club: Club,
    joining: list[tuple[str, ImportRecord]],
    subscriber_ids: dict[str, int],
    consent_given: bool,
    source: str,
    job_id: int | None,
    db_now: Any,
) -> list[int]:
    """Insert the memberships; return the ids of unconfirmed ones (to be mailed)."""
    confirmed = consent_given or not club.double_opt_in
    status = (
        MembershipStatus.CONFIRMED if confirmed else MembershipStatus.UNCONFIRMED
    ).value
    consent_text_id = current_consent_text(club).id
    confirmed_at = db_now if confirmed else None
    rows = [
        (
            subscriber_ids[key],
            club.id,
            status,
            record.tracking_consent,
            source,
            consent_text_id,
            db_now,
            confirmed_at,
            job_id,
            db_now,
        )
        for key, record in joining
    ]
    before = 0 if confirmed else _max_id(session, Membership)
    bulk_insert(session, Membership, MEMBERSHIP_COLUMNS, rows)
    if confirmed:
        return []
    return list(
        session.scalars(
            select(Membership.id)
            .where(
                Membership.club_id == club.id,
                Membership.id > before,
                Membership.import_job_id.is_(None)
                if job_id is None
                else Membership.import_job_id == job_id,
                Membership.consent_source == source,
            )
            .order_by(Membership.id)
        )
    )


def _max_id(session: Session, model: type) -> int:
    return session.scalar(select(func.max(model.id))) or 0


SUBSCRIBER_COLUMNS = (
    "library_id",
    "email",
    "email_key",
    "first_name",
    "last_name",
    "language",
    "attributes",
    "created_at",
    "updated_at",
)
MEMBERSHIP_COLUMNS = (
    "subscriber_id",
    "club_id",
    "status",
    "tracking_consent",
    "consent_source",
    "consent_text_id",
    "submitted_at",
    "confirmed_at",
    "import_job_id",
    "updated_at",
)


def bulk_insert(
    session: Session, model: type, columns: tuple[str, ...], rows: list[tuple]
) -> None:
    """Insert many rows of plain database values at driver speed.

    COPY on PostgreSQL, executemany on SQLite: the ORM's per-value type handling
    would cost more than the database work itself. Values must already be in
    the database's form (see `_db_datetime`, JSON as text).
    """
    connection = session.connection()
    table = model.__table__.name
    names = ", ".join(columns)
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
        ):
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                copy.write("".join(_copy_line(row) for row in chunk))
        return
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    marks = ", ".join([mark] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _copy_line(row: tuple) -> str:
    """One row in PostgreSQL's COPY text format."""
    return "\t".join(map(_copy_value, row)) + "\n"


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if type(value) is str:
        if _COPY_SPECIAL.search(value):
            return _COPY_SPECIAL.sub(lambda m: _COPY_ESCAPES[m.group()], value)
        return value
    return str(value)


def one_of(session: Session, column: Any, values: list) -> Any:
    """`column IN values`; on PostgreSQL as `= ANY(array)`, one parameter, not 5,000."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(values, ARRAY(column.type)))
    return column.in_(bindparam(None, values, expanding=True, type_=column.type))


def _db_datetime(session: Session, value: datetime) -> Any:
    """An aware datetime as the database driver takes it (see UTCDateTime)."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLAlchemy's SQLite DATETIME storage format, in UTC.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.astimezone(UTC).isoformat()


def _suppressed(session: Session, library_id: int, keys: list[str]) -> set[str]:
    """`suppressed_keys`, skipping the hashing for libraries that erased nobody."""
    anyone = session.scalar(
        select(Suppression.id).where(Suppression.library_id == library_id).limit(1)
    )
    return suppressed_keys(session, library_id, keys) if anyone else set()


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
    # The names are the same for every row: check them once.
    names_ok = _names_ok([name for name, _i in attributes])
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
            (fields[language].strip().lower() or None)
            if language is not None
            else None,
            False,
            {name: v for name, i in attributes if (v := fields[i].strip())},
            names_ok,
        )


def _names_ok(names: list[str]) -> bool:
    try:
        clean_attributes(dict.fromkeys(names, ""))
    except SubscriberError:
        return False
    return all(name == name.strip() for name in names)


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
    try:
        finished = _run_batches(session, job_id, owner, batch_rows)
    except Exception as exc:
        session.rollback()
        _sqlite_for_batches(session, False)
        log.exception("import %s failed", job_id)
        _finish(session, job_id, owner, ImportStatus.FAILED, str(exc)[:2000])
        return
    _sqlite_for_batches(session, False)
    if finished:
        _finish(session, job_id, owner, ImportStatus.DONE, None)


def _run_batches(session: Session, job_id: int, owner: str, batch_rows: int) -> bool:
    """Work through the rows after the checkpoint; False if the lease was lost."""
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
    while batch := list(islice(records, batch_rows)):
        _sqlite_for_batches(session, True)
        if not _renew_lease(session, job_id, owner):
            session.rollback()
            log.warning("import %s: lease lost; another runner has it", job_id)
            return False
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
    return True


def _sqlite_for_batches(session: Session, batches: bool) -> None:
    """SQLite settings for bulk batches, and back to the defaults afterwards.

    Called between transactions: SQLite refuses to change them inside one.
    In WAL mode, synchronous=NORMAL skips the fsync at each commit and still
    cannot corrupt the database; a power cut may lose the last batches, but
    those lose their checkpoint with them, so the import simply redoes them.
    A bigger page cache than the 2 MB default keeps the indexes in memory, and
    checkpointing the WAL every 40 MB instead of every 4 MB writes pages that
    several batches change only once.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    if batches:
        connection.exec_driver_sql("PRAGMA synchronous = NORMAL")
        connection.exec_driver_sql("PRAGMA cache_size = -65536")
        connection.exec_driver_sql("PRAGMA wal_autocheckpoint = 10000")
    else:
        connection.exec_driver_sql("PRAGMA synchronous = FULL")
        connection.exec_driver_sql("PRAGMA cache_size = -2000")
        connection.exec_driver_sql("PRAGMA wal_autocheckpoint = 1000")


def _renew_lease(session: Session, job_id: int, owner: str) -> bool:
    """Extend our lease; False if another runner has taken the job over.

    On PostgreSQL this also locks the job's row until the batch commits, so no
    other runner can take the job over halfway through a batch. The batch's
    commit need not wait for the disk (synchronous_commit off): a crash can
    lose only whole batches together with their checkpoint, which are redone.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))
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
