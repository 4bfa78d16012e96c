"""Importing members into a club in bulk (from CSV files and the API).

`import_records` does the work for one batch with a handful of set-based queries:
it never loads a club's whole membership. The CSV job runner feeds it batches and
commits each batch together with the job's progress, so a crash leaves the job at
an exact row count from which it resumes: no half-done state.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import queue
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from json.encoder import encode_basestring_ascii
from types import SimpleNamespace
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import (
    String,
    Text,
    and_,
    any_,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

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
    added_by_source,
    clean_attributes,
    current_consent_text,
    normalize_email,
    suppressed_keys,
)

log = logging.getLogger("klubpost.imports")

BATCH_ROWS = 20000
# The first batch of a run: small, so writing starts soon (see _ValidatedBatches).
FIRST_BATCH_ROWS = 2000
LEASE_SECONDS = 60
# How often a batch is written again after losing a race for an address.
BATCH_ATTEMPTS = 3

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
    duplicates across batches are reported too. With `consent_given` members are
    confirmed; otherwise they are unconfirmed and must confirm by mail (in any
    club: single opt-in is for the person's own sign-up only).
    """
    seen = set() if seen is None else seen
    report = ImportReport()
    valid = _validate(records, club, report, seen)
    return apply_records(
        session,
        club,
        valid,
        report,
        consent_given=consent_given,
        source=source,
        job_id=job_id,
    )


# Accepted rows by address key: (address, record, language, attributes as JSON).
Validated = dict[str, tuple[str, "ImportRecord", str, str]]


def apply_records(
    session: Session,
    club: Club,
    valid: Validated,
    report: ImportReport,
    *,
    consent_given: bool,
    source: str,
    job_id: int | None = None,
) -> ImportReport:
    """The database half of `import_records`, for rows `_validate` accepted."""
    if valid:
        joining = _add_people(session, club, valid, report)
        if joining:
            _insert_memberships(session, club, joining, consent_given, source, job_id)
        report.counts[IMPORTED] += len(joining)
    _save_issues(session, job_id, report)
    return report


def _add_people(
    session: Session, club: Club, valid: Validated, report: ImportReport
) -> list[tuple[int, ImportRecord]]:
    """Report who cannot join, add the new people; (subscriber id, row) to join."""
    library_id = club.library_id
    known, statuses = _known_people(session, club, list(valid))
    suppressed = _suppressed(session, library_id, [k for k in valid if k not in known])
    db_now = _db_datetime(session, utcnow())
    new_people: list[tuple] = []
    joining: list[tuple[str, ImportRecord]] = []
    for key, (address, record, language, attributes) in valid.items():
        if key in suppressed:
            report.add_issue(record, SUPPRESSED)
            continue
        status = statuses.get(key)
        if status is not None:
            left = status not in (
                MembershipStatus.CONFIRMED,
                MembershipStatus.UNCONFIRMED,
            )
            report.add_issue(record, LEFT_CLUB if left else ALREADY_MEMBER)
            continue
        if key not in known:
            first, last = record.first_name, record.last_name
            new_people.append(
                (library_id, address, key, first, last, language, attributes)
                + (db_now, db_now)
            )
        joining.append((key, record))
    if new_people:
        known.update(_insert_subscribers(session, library_id, new_people))
    return [(known[key], record) for key, record in joining]


def _known_people(
    session: Session, club: Club, keys: list[str]
) -> tuple[dict[str, int], dict[str, MembershipStatus]]:
    """Subscriber ids of these address keys, and their memberships of the club."""
    rows = session.execute(
        select(Subscriber.email_key, Subscriber.id, Membership.status)
        .outerjoin(
            Membership,
            and_(
                Membership.subscriber_id == Subscriber.id,
                Membership.club_id == club.id,
            ),
        )
        .where(
            Subscriber.library_id == club.library_id,
            one_of(session, Subscriber.email_key, keys),
        )
    ).all()
    return (
        {key: subscriber_id for key, subscriber_id, _status in rows},
        {key: status for key, _id, status in rows if status is not None},
    )


def _insert_subscribers(
    session: Session, library_id: int, rows: list[tuple]
) -> dict[str, int]:
    """Insert new subscribers (rows of SUBSCRIBER_COLUMNS); their ids by key.

    No query has to find the new rows again: PostgreSQL hands out the ids
    before COPY writes them, and SQLite's are known from how it numbers rows.
    """
    keys = [row[2] for row in rows]
    if session.get_bind().dialect.name != "postgresql":
        bulk_insert(session, Subscriber, SUBSCRIBER_COLUMNS, rows)
        # SQLite numbers a new row one above the largest id in the table, and
        # nobody else can write until this transaction ends: the rows just
        # inserted hold the last len(rows) ids, in order.
        last = session.scalar(select(func.max(Subscriber.id)))
        return dict(zip(keys, range(last - len(rows) + 1, last + 1), strict=True))
    ids = session.scalar(_NEW_SUBSCRIBER_IDS, {"n": len(rows)})
    with_ids = [(i, *row) for i, row in zip(ids, rows, strict=True)]
    bulk_insert(session, Subscriber, {"id": "int4", **SUBSCRIBER_COLUMNS}, with_ids)
    return dict(zip(keys, ids, strict=True))


# n new ids, as one array (cheaper to read than n rows). The sequence is
# looked up once, not for every id (that would cost more than nextval itself).
_NEW_SUBSCRIBER_IDS = text(
    "SELECT array_agg(nextval(seq)) FROM (SELECT pg_get_serial_sequence("
    "'subscriber', 'id')::regclass AS seq) AS s, generate_series(1, :n)"
)


def _save_issues(session: Session, job_id: int | None, report: ImportReport) -> None:
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


def _validate(
    records: Iterable[ImportRecord], club: Any, report: ImportReport, seen: set[str]
) -> Validated:
    """Check each record; return the good ones by address key, in file order.

    Uses only the club's language, and touches no database: the job runner
    runs it in a thread of its own, ahead of the batch being written (which
    is also why the attributes are turned into JSON text here).
    """
    valid: Validated = {}
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
            names = record.first_name + record.last_name
            if "\n" in names or "\r" in names:  # as every other way in refuses
                raise SubscriberError("line break in a name", "name")
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
        valid[key] = (address, record, language, _json_object(attributes))
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
    joining: list[tuple[int, ImportRecord]],
    consent_given: bool,
    source: str,
    job_id: int | None,
) -> None:
    """Insert the new memberships of a batch, each with its consent record.

    Without consent given they wait for the confirmation mail, whatever the
    club's setting: single opt-in is for the person's own sign-up only.
    """
    confirmed = consent_given
    source = added_by_source(source, consent_given)
    status = (
        MembershipStatus.CONFIRMED if confirmed else MembershipStatus.UNCONFIRMED
    ).value
    consent_text_id = current_consent_text(club).id
    db_now = _db_datetime(session, utcnow())
    confirmed_at = db_now if confirmed else None
    rows = [
        (subscriber_id, club.id, status, record.tracking_consent, source)
        + (consent_text_id, db_now, confirmed_at, job_id, db_now)
        for subscriber_id, record in joining
    ]
    bulk_insert(session, Membership, MEMBERSHIP_COLUMNS, rows)


# The columns the bulk inserts write, with their types for PostgreSQL's binary
# COPY (texts and JSON travel as text: the server parses JSON from it anyway).
SUBSCRIBER_COLUMNS = {
    "library_id": "int4",
    "email": "text",
    "email_key": "text",
    "first_name": "text",
    "last_name": "text",
    "language": "text",
    "attributes": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
MEMBERSHIP_COLUMNS = {
    "subscriber_id": "int4",
    "club_id": "int4",
    "status": "text",
    "tracking_consent": "bool",
    "consent_source": "text",
    "consent_text_id": "int4",
    "submitted_at": "timestamptz",
    "confirmed_at": "timestamptz",
    "import_job_id": "int4",
    "updated_at": "timestamptz",
}


def bulk_insert(
    session: Session, model: type, columns: dict[str, str], rows: list[tuple]
) -> None:
    """Insert many rows of plain database values at driver speed.

    Binary COPY on PostgreSQL (no text for the server to parse), executemany on
    SQLite: the ORM's per-value type handling would cost more than the database
    work itself. Values must already be in the database's form (see
    `_db_datetime`, JSON as text).
    """
    connection = session.connection()
    table = model.__table__.name
    names = ", ".join(columns)
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        # psycopg formats the rows in C and sends them in chunks.
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(list(columns.values()))
            for row in rows:
                copy.write_row(row)
        return
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    marks = ", ".join([mark] * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


def one_of(session: Session, column: Any, values: list[str]) -> Any:
    """`column IN values` as one parameter, not 20,000 (which cost more to bind).

    PostgreSQL takes the texts as lines of one text that the server splits
    into an array (`= ANY`): psycopg would format an array parameter element
    by element in Python, which took as long as the query itself and held
    the interpreter while the other writer needed it. Texts that contain a
    line break go as an array. SQLite takes a JSON list (`json_each`).
    """
    if session.get_bind().dialect.name == "postgresql":
        lines = "\n".join(values)
        # ("" would split into no values at all, not into one empty one.)
        if not lines or lines.count("\n") != len(values) - 1:
            return column == any_(literal(values, ARRAY(column.type)))
        return column == any_(func.string_to_array(literal(lines, Text), "\n"))
    listed = func.json_each(literal(json.dumps(values), String)).table_valued("value")
    return column.in_(select(listed.c.value))


def _db_datetime(session: Session, value: datetime) -> Any:
    """An aware datetime as the bulk inserts take it (see UTCDateTime)."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLAlchemy's SQLite DATETIME storage format, in UTC.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.astimezone(UTC)


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
        with _rare_garbage_collection():
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


@contextmanager
def _rare_garbage_collection() -> Iterator[None]:
    """Let the cyclic garbage collector run rarely while a job is imported.

    An import makes hundreds of thousands of small objects without cycles;
    by default the collector walks the live batches again every 700 new
    objects, about a fifth of the import's CPU time. Reference counting still
    frees them at once; cycles are collected later, as usual.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _run_batches(session: Session, job_id: int, owner: str, batch_rows: int) -> bool:
    """Work through the rows after the checkpoint; False if the lease was lost.

    A reader thread parses and checks the next batches while they are written,
    so the database and Python work at the same time. On PostgreSQL two
    connections write batches in turn (see `_write_on_two_connections`).
    """
    job = session.get(ImportJob, job_id)
    run = _JobRun(job_id, owner, job.consent_given, job.processed_rows, job.counts)
    batches = _ValidatedBatches(job, job.club.language, batch_rows)
    try:
        if session.get_bind().dialect.name == "postgresql":
            return _write_on_two_connections(session, job.club_id, run, batches)
        return _write_batches(session, job.club, run, batches, _CommitOrder())
    finally:
        batches.close()


@dataclass
class _JobRun:
    """A runner's hold on a job, and the job's checkpoint: rows done, counts."""

    job_id: int
    owner: str
    consent_given: bool
    rows: int
    counts: dict[str, int] | None


def _write_on_two_connections(
    session: Session, club_id: int, run: _JobRun, batches: _ValidatedBatches
) -> bool:
    """Write the batches on two connections at once, committing in file order.

    Most of a PostgreSQL import is the server's work on each row (foreign key
    checks, index entries), done by the one server process of a connection.
    With a second connection (and a thread to drive it) a second server
    process writes batch N+1 while the first finishes batch N, so the server
    uses both cores. Each batch stays one transaction with its checkpoint, and
    `_CommitOrder` makes batch N+1 commit only after batch N did: the
    committed batches are always the first ones of the file, as before.
    """
    order = _CommitOrder()
    app = current_app._get_current_object()
    results: list[bool | BaseException] = []

    def second_writer() -> None:
        try:
            with app.app_context(), Session(bind=session.get_bind()) as other:
                club = other.get(Club, club_id)
                results.append(_write_batches(other, club, run, batches, order))
        except BaseException as exc:  # raised again by the first writer
            order.stop()
            results.append(exc)

    thread = threading.Thread(target=second_writer, daemon=True)
    thread.start()
    try:
        mine = _write_batches(session, session.get(Club, club_id), run, batches, order)
    except BaseException:
        order.stop()
        raise
    finally:
        thread.join()
    if isinstance(results[0], BaseException):
        raise results[0]
    return mine and results[0]


def _write_batches(
    session: Session,
    club: Club,
    run: _JobRun,
    batches: _ValidatedBatches,
    order: _CommitOrder,
) -> bool:
    """Write batches as the reader hands them out; False if the lease was lost."""
    while not order.stopped and (taken := batches.take()) is not None:
        number, (rows, valid, checked) = taken
        if not _write_batch(session, club, run, number, rows, valid, checked, order):
            order.stop()
            return False
    return True


class _CommitOrder:
    """Lets batch N commit only after batch N-1 has; stops all after a failure."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._next = 1
        self._stopped = False

    def wait_for_turn(self, number: int) -> bool:
        """Wait until the batches before `number` are in; False if stopped."""
        with self._turn:
            self._turn.wait_for(lambda: self._next == number or self._stopped)
            return not self._stopped

    def committed(self, number: int) -> None:
        """Batch `number` is in; the next may commit."""
        with self._turn:
            self._next = number + 1
            self._turn.notify_all()

    @property
    def stopped(self) -> bool:
        """Whether a batch failed or the lease was lost."""
        return self._stopped

    def stop(self) -> None:
        """A batch failed or the lease was lost: no later batch may commit."""
        with self._turn:
            self._stopped = True
            self._turn.notify_all()


def _write_batch(
    session: Session,
    club: Club,
    run: _JobRun,
    number: int,
    rows: int,
    valid: Validated,
    checked: ImportReport,
    order: _CommitOrder,
) -> bool:
    """Write one checked batch and, in its turn, commit it with the checkpoint.

    False if another runner has taken the job over (or an earlier batch
    failed). On PostgreSQL a sign-up can take an address (or a membership)
    after the batch looked people up; the batch then fails on the unique key,
    and is written again from the start, now finding that person, instead of
    failing the whole import.
    """
    attempt = 1
    while True:
        _begin_batch(session)
        if not _hold_job(session, run):
            session.rollback()
            log.warning("import %s: lease lost; another runner has it", run.job_id)
            return False
        try:
            report = apply_records(
                session,
                club,
                valid,
                ImportReport(Counter(checked.counts), list(checked.issues)),
                consent_given=run.consent_given,
                source=f"import:{run.job_id}",
                job_id=run.job_id,
            )
        except Exception as exc:
            session.rollback()
            if attempt == BATCH_ATTEMPTS or not _lost_a_race(exc):
                raise
            attempt += 1
            log.info("import %s: a sign-up took an address; again", run.job_id)
            continue
        if not order.wait_for_turn(number):
            session.rollback()
            return False
        if not _commit_batch(session, run, rows, report):
            session.rollback()
            log.warning("import %s: lease lost; another runner has it", run.job_id)
            return False
        order.committed(number)
        return True


def _begin_batch(session: Session) -> None:
    """Settings for a batch's transaction, before its first statement.

    On PostgreSQL the batch's commit need not wait for the disk
    (synchronous_commit off): a crash can lose only the last committed
    batches, each together with its checkpoint, and those are simply redone.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))
    else:
        _sqlite_for_batches(session, True)


def _hold_job(session: Session, run: _JobRun) -> bool:
    """Whether the job is still ours; if so, keep it ours until the commit.

    The shared lock (FOR KEY SHARE, which the batch's memberships take on the
    job's row anyway) makes `claim_job`, which locks FOR UPDATE, pass the job
    by while a batch is being written; both connections can hold it at once,
    and the checkpoint's update does not wait for it.
    """
    return (
        session.execute(
            select(ImportJob.id)
            .where(
                ImportJob.id == run.job_id,
                ImportJob.lease_owner == run.owner,
                ImportJob.status == ImportStatus.RUNNING,
            )
            .with_for_update(key_share=True, read=True)
        ).first()
        is not None
    )


def _commit_batch(
    session: Session, run: _JobRun, rows: int, report: ImportReport
) -> bool:
    """Move the job's checkpoint past a batch, renew the lease, and commit.

    False (nothing committed) if another runner has taken the job over, or
    the checkpoint is not where this batch starts.
    """
    counts = Counter(run.counts or {})
    counts.update(report.counts)
    lease = timedelta(seconds=_lease_seconds())
    still_ours = session.execute(
        update(ImportJob)
        .where(
            ImportJob.id == run.job_id,
            ImportJob.lease_owner == run.owner,
            ImportJob.status == ImportStatus.RUNNING,
            ImportJob.processed_rows == run.rows,
        )
        .values(
            processed_rows=run.rows + rows,
            counts=dict(counts),
            lease_expires_at=utcnow() + lease,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not still_ours:
        return False
    session.commit()
    run.rows, run.counts = run.rows + rows, dict(counts)
    return True


def _lost_a_race(exc: Exception) -> bool:
    """Whether a write failed on a unique key that another transaction took."""
    return getattr(getattr(exc, "orig", exc), "sqlstate", None) == "23505"


class _ValidatedBatches:
    """Hand out a job's remaining rows as checked batches, read by a thread.

    The thread only parses and validates (no database, no ORM objects); it
    stays at most two batches ahead of the writers. The first batch is small,
    so writing can start while the rest of the file is still being read.
    """

    def __init__(self, job: ImportJob, language: str, batch_rows: int) -> None:
        self._records = job_records(job)
        self._skip = job.processed_rows
        self._club = SimpleNamespace(language=language)
        self._batch_rows = batch_rows
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._taking = threading.Lock()
        self._taken = 0
        self._finished = False
        self._app = current_app._get_current_object()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._app.app_context():
                seen: set[str] = set()
                if self._skip:
                    # Rows before the checkpoint are in; their addresses are
                    # still needed, so later duplicates are reported as such.
                    head = islice(self._records, self._skip)
                    _validate(head, self._club, ImportReport(), seen)
                size = min(self._batch_rows, FIRST_BATCH_ROWS)
                while not self._stop.is_set():
                    batch = list(islice(self._records, size))
                    if not batch:
                        break
                    report = ImportReport()
                    valid = _validate(batch, self._club, report, seen)
                    self._put((len(batch), valid, report))
                    size = self._batch_rows
            self._put(None)
        except Exception as exc:  # handed to the writing thread, which fails the job
            self._put(exc)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def take(self) -> tuple[int, tuple[int, Validated, ImportReport]] | None:
        """The next batch and its number (from 1), or None after the last.

        Safe to call from several writing threads: the numbers follow the
        order of the file.
        """
        with self._taking:
            if self._finished:
                return None
            item = self._queue.get()
            if item is None or isinstance(item, Exception):
                self._finished = True
                if item is not None:
                    raise item
                return None
            self._taken += 1
            return self._taken, item

    def close(self) -> None:
        """Stop the reader (after the last batch, a lost lease or an error)."""
        self._stop.set()
        self._thread.join(timeout=10)


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


def _finish(
    session: Session, job_id: int, owner: str, status: ImportStatus, error: str | None
) -> None:
    """Close the job; unconfirmed members are left to the confirmation mailer.

    The scheduler's `queue_import_confirmations` queues their mails in batches
    once the count of pending confirmations is set here (not per batch: the
    mailer changes the same counts, and a job never races with itself).
    """
    from subscribers.mails import CONFIRMATIONS_PENDING

    job = session.get(ImportJob, job_id, populate_existing=True)
    counts = dict(job.counts or {})
    if not job.consent_given and counts.get(IMPORTED):
        counts[CONFIRMATIONS_PENDING] = counts[IMPORTED]
    session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.lease_owner == owner)
        .values(
            status=status,
            error=error,
            counts=counts,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
