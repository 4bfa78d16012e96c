"""JSON API for libraries, clubs, subscribers, memberships and bulk import.

Token-authenticated (`Authorization: Bearer kp_...`), JSON in and out. The rules
live in `subscribers.services`; this module checks input, roles and libraries,
and turns the services' exceptions into JSON errors. See docs/api.md.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, selectinload

from accounts.models import Library, Role
from klubpost import jsonapi
from klubpost.db import db, utcnow
from klubpost.errors import ApiError, json_error
from klubpost.openapi import build_document, describe
from klubpost.security import csrf
from subscribers import services
from subscribers.imports import (
    IMPORTED,
    INVALID_ROW,
    ImportRecord,
    ImportReport,
    import_records,
)
from subscribers.mails import CONFIRMATIONS_PENDING, send_confirmation
from subscribers.models import (
    Club,
    ImportIssue,
    ImportJob,
    ImportStatus,
    Membership,
    MembershipStatus,
    Subscriber,
)

bp = Blueprint("api", __name__, url_prefix="/api")
# Token-authenticated and cookie-free, so cross-site request forgery cannot apply.
csrf.exempt(bp)

MAX_IMPORT_RECORDS = 10_000
CONFLICTS = (services.AlreadyExists, services.Suppressed, services.InvalidTransition)
NOT_FOUND = {
    Library: _l("There is no such library."),
    Club: _l("There is no such club."),
    Subscriber: _l("There is no such subscriber."),
    Membership: _l("There is no such membership."),
    ImportJob: _l("There is no such import."),
}
PAGING = {
    "q": {"schema": {"type": "string"}, "description": "Search address and names."},
    "limit": {"schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    "after": {
        "schema": {"type": "integer", "minimum": 0},
        "description": "Keyset paging: items with a larger id than this.",
    },
    "page": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Numbered paging instead of `after`; adds `total`.",
    },
}


@bp.before_request
def authenticate():
    """Every API call but the OpenAPI document needs a valid, unrevoked token."""
    if request.endpoint == "api.openapi":
        return
    jsonapi.authenticate()
    jsonapi.limit_body()


@bp.errorhandler(services.SubscriberError)
def rule_broken(exc: services.SubscriberError):
    """A service refused: 409 for conflicts with what is stored, else 422."""
    db.session.rollback()
    status = 409 if isinstance(exc, CONFLICTS) else 422
    return json_error(status, exc.code, exc.message, exc.field)


@bp.errorhandler(IntegrityError)
def conflict(exc: IntegrityError):
    """Two requests racing to create the same thing: the loser gets a 409."""
    db.session.rollback()
    return json_error(
        409, "conflict", _("This conflicts with a change made at the same time.")
    )


def _get(model: type, object_id: int) -> Any:
    """A row the token's user may see, or a 404 JSON error."""
    obj = jsonapi.get_by_id(model, object_id)
    if model is Library:
        library_id = obj.id if obj else None
    elif model is ImportJob:
        library_id = obj.club.library_id if obj else None
    else:
        library_id = obj.library_id if obj else None
    return jsonapi.found(obj, library_id, str(NOT_FOUND[model]))


def _target_library(body: dict[str, Any]) -> Library:
    """The library a new object goes to: `library_id`, else the user's only one."""
    if "library_id" in body:
        library = jsonapi.get_by_id(Library, body.pop("library_id"))
        jsonapi.check_visible(
            library.id if library else None,
            str(NOT_FOUND[Library]),
            "library_id",
        )
        return library
    ids = jsonapi.visible_library_ids()
    if len(ids) != 1:
        raise ApiError(
            422,
            "required",
            _("Say which library: you may work in more than one."),
            "library_id",
        )
    return db.session.get(Library, ids[0])


def _created(payload: dict[str, Any]):
    return jsonify(payload), 201


def _iso(value) -> str | None:
    return value.isoformat() if value else None


# ---------------------------------------------------------------- libraries


def library_json(library: Library) -> dict[str, Any]:
    """A library as the API shows it."""
    return {
        "id": library.id,
        "name": library.name,
        "slug": library.slug,
        "domain": library.domain,
        "language": library.language,
        "timezone": library.timezone,
        "consortium_id": library.consortium_id,
    }


@bp.get("/libraries")
@describe("List the libraries you may see", role="staff", response="LibraryList")
def libraries():
    """The libraries the token's user may see."""
    jsonapi.require_role(Role.STAFF)
    rows = db.session.scalars(
        select(Library)
        .where(Library.id.in_(jsonapi.visible_library_ids()))
        .order_by(Library.id)
    )
    return jsonify({"items": [library_json(lib) for lib in rows]})


@bp.get("/libraries/<int:library_id>")
@describe("Show a library", role="staff", response="Library")
def library(library_id: int):
    """One library."""
    jsonapi.require_role(Role.STAFF)
    return jsonify(library_json(_get(Library, library_id)))


# ---------------------------------------------------------------- clubs

CONSENT_FIELDS = ("consent_text", "tracking_text")


def club_json(club: Club, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A club as the API shows it, with its current consent texts."""
    consent = services.current_consent_text(club)
    if counts is None:
        counts = _member_counts([club.id]).get(club.id, {})
    return {
        "id": club.id,
        "library_id": club.library_id,
        "name": club.name,
        "slug": club.slug,
        "description": club.description,
        "language": club.language,
        "from_name": club.from_name,
        "from_email": club.from_email,
        "reply_to": club.reply_to,
        "double_opt_in": club.double_opt_in,
        "tracking_consent_required": club.tracking_consent_required,
        "tracking_mode": club.tracking_mode.value,
        "public_archive": club.public_archive,
        "consent_text": consent.text,
        "tracking_text": consent.tracking_text,
        "consent_text_version": consent.version,
        "counts": counts,
        "created_at": _iso(club.created_at),
    }


def _member_counts(club_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    if not club_ids:
        return counts
    for club_id, status, count in db.session.execute(
        select(Membership.club_id, Membership.status, func.count())
        .where(Membership.club_id.in_(club_ids))
        .group_by(Membership.club_id, Membership.status)
    ):
        counts.setdefault(club_id, {})[status.value] = count
    return counts


@bp.get("/clubs")
@describe(
    "List clubs",
    role="staff",
    response="ClubList",
    query={"library_id": {"schema": {"type": "integer"}}},
)
def clubs():
    """The clubs of the libraries the user may see (or of one of them)."""
    jsonapi.require_role(Role.STAFF)
    library_ids = jsonapi.visible_library_ids()
    if "library_id" in request.args:
        wanted = jsonapi.int_arg("library_id", 0, 1, jsonapi.MAX_ID)
        jsonapi.check_visible(wanted, str(NOT_FOUND[Library]), "library_id")
        library_ids = [wanted]
    rows = db.session.scalars(
        select(Club)
        .where(Club.library_id.in_(library_ids))
        .options(selectinload(Club.consent_texts))
        .order_by(Club.id)
    ).all()
    counts = _member_counts([c.id for c in rows])
    return jsonify({"items": [club_json(c, counts.get(c.id, {})) for c in rows]})


@bp.post("/clubs")
@describe(
    "Create a club",
    role="admin",
    response="Club",
    status=201,
    body="ClubCreate",
    errors=(404, 409),
)
def create_club():
    """A new club, with its first consent texts."""
    jsonapi.require_role(Role.ADMIN)
    body = jsonapi.json_body("ClubCreate")
    library = _target_library(body)
    consent = {k: body.pop(k) for k in CONSENT_FIELDS if k in body}
    club = services.create_club(db.session, library, **body)
    _set_consent(club, consent)
    db.session.commit()
    return _created(club_json(club))


def _set_consent(club: Club, consent: dict[str, str]) -> None:
    if not consent:
        return
    current = services.current_consent_text(club)
    services.set_consent_text(
        db.session,
        club,
        consent.get("consent_text", current.text),
        consent.get("tracking_text", current.tracking_text),
    )


@bp.get("/clubs/<int:club_id>")
@describe("Show a club", role="staff", response="Club")
def club(club_id: int):
    """One club with its member counts."""
    jsonapi.require_role(Role.STAFF)
    return jsonify(club_json(_get(Club, club_id)))


@bp.patch("/clubs/<int:club_id>")
@describe(
    "Change a club's settings",
    role="admin",
    response="Club",
    body="ClubUpdate",
    errors=(409,),
)
def update_club(club_id: int):
    """Change some of a club's settings; a changed consent text is a new version."""
    jsonapi.require_role(Role.ADMIN)
    club = _get(Club, club_id)
    body = jsonapi.json_body("ClubUpdate")
    consent = {k: body.pop(k) for k in CONSENT_FIELDS if k in body}
    services.update_club(db.session, club, **body)
    _set_consent(club, consent)
    db.session.commit()
    return jsonify(club_json(club))


@bp.delete("/clubs/<int:club_id>")
@describe("Delete a club and its memberships", role="admin", status=204)
def delete_club(club_id: int):
    """Delete a club; its members stay known to the library."""
    jsonapi.require_role(Role.ADMIN)
    services.delete_club(db.session, _get(Club, club_id))
    db.session.commit()
    return "", 204


# ---------------------------------------------------------------- subscribers


def subscriber_json(person: Subscriber, *, memberships: bool = False) -> dict:
    """A subscriber as the API shows it."""
    data = {
        "id": person.id,
        "library_id": person.library_id,
        "email": person.email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "language": person.language,
        "attributes": person.attributes or {},
        "created_at": _iso(person.created_at),
        "updated_at": _iso(person.updated_at),
    }
    if memberships:
        data["memberships"] = [membership_json(m) for m in person.memberships]
    return data


@bp.get("/subscribers")
@describe(
    "List and search subscribers",
    role="staff",
    response="SubscriberList",
    query={"library_id": {"schema": {"type": "integer"}}, **PAGING},
)
def subscribers():
    """The subscribers of the user's libraries, searched and paged."""
    jsonapi.require_role(Role.STAFF)
    library_ids = jsonapi.visible_library_ids()
    if "library_id" in request.args:
        wanted = jsonapi.int_arg("library_id", 0, 1, jsonapi.MAX_ID)
        jsonapi.check_visible(wanted, str(NOT_FOUND[Library]), "library_id")
        library_ids = [wanted]
    stmt = services.search_subscribers(library_ids, request.args.get("q", ""))
    return jsonify(jsonapi.paginate(stmt, Subscriber.id, subscriber_json))


@bp.post("/subscribers")
@describe(
    "Add a subscriber to a library",
    role="editor",
    response="Subscriber",
    status=201,
    body="SubscriberCreate",
    errors=(404, 409),
)
def create_subscriber():
    """A new person; refuses duplicates and erased addresses."""
    jsonapi.require_role(Role.EDITOR)
    body = jsonapi.json_body("SubscriberCreate")
    library = _target_library(body)
    person = services.create_subscriber(db.session, library, body.pop("email"), **body)
    db.session.commit()
    return _created(subscriber_json(person, memberships=True))


@bp.get("/subscribers/<int:subscriber_id>")
@describe(
    "Show a subscriber and their memberships", role="staff", response="Subscriber"
)
def subscriber(subscriber_id: int):
    """One subscriber with memberships and consent records."""
    jsonapi.require_role(Role.STAFF)
    return jsonify(subscriber_json(_get(Subscriber, subscriber_id), memberships=True))


@bp.patch("/subscribers/<int:subscriber_id>")
@describe(
    "Change a subscriber",
    role="editor",
    response="Subscriber",
    body="SubscriberUpdate",
    errors=(409,),
)
def update_subscriber(subscriber_id: int):
    """Change a subscriber's address, name, language or attributes."""
    jsonapi.require_role(Role.EDITOR)
    person = _get(Subscriber, subscriber_id)
    body = jsonapi.json_body("SubscriberUpdate")
    services.update_subscriber(db.session, person, **body)
    db.session.commit()
    return jsonify(subscriber_json(person, memberships=True))


@bp.delete("/subscribers/<int:subscriber_id>")
@describe("Delete a subscriber", role="editor", status=204)
def delete_subscriber(subscriber_id: int):
    """Delete a person and their memberships (an import may add them again)."""
    jsonapi.require_role(Role.EDITOR)
    db.session.delete(_get(Subscriber, subscriber_id))
    db.session.commit()
    return "", 204


@bp.post("/subscribers/<int:subscriber_id>/erase")
@describe("Erase a subscriber at their request", role="editor", status=204)
def erase_subscriber(subscriber_id: int):
    """Delete a person's data and keep a hash, so no import can add them again."""
    jsonapi.require_role(Role.EDITOR)
    services.erase(db.session, _get(Subscriber, subscriber_id))
    db.session.commit()
    return "", 204


@bp.get("/subscribers/<int:subscriber_id>/data")
@describe(
    "Export everything held about a subscriber",
    role="staff",
    response="SubscriberData",
)
def subscriber_data(subscriber_id: int):
    """The person's data, as "download my data" gives it to them."""
    jsonapi.require_role(Role.STAFF)
    return jsonify(services.export_data(_get(Subscriber, subscriber_id)))


# ---------------------------------------------------------------- memberships

STATUSES = [s.value for s in MembershipStatus]


def membership_json(membership: Membership, confirmation_sent: bool | None = None):
    """A membership with its person and consent record."""
    person = membership.subscriber
    data = {
        "id": membership.id,
        "club_id": membership.club_id,
        "subscriber_id": membership.subscriber_id,
        "email": person.email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "status": membership.status.value,
        "tracking_consent": membership.tracking_consent,
        "consent": {
            "source": membership.consent_source,
            "consent_text_version": membership.consent_text.version
            if membership.consent_text
            else None,
            "submitted_at": _iso(membership.submitted_at),
            "confirmed_at": _iso(membership.confirmed_at),
            "unsubscribed_at": _iso(membership.unsubscribed_at),
            "ip_truncated": membership.ip_truncated,
        },
    }
    if confirmation_sent is not None:
        data["confirmation_sent"] = confirmation_sent
    return data


@bp.get("/clubs/<int:club_id>/members")
@describe(
    "List a club's members",
    role="staff",
    response="MembershipList",
    query={
        "status": {"schema": {"type": "string", "enum": STATUSES}},
        **PAGING,
    },
)
def members(club_id: int):
    """A club's memberships, filtered by status and a search text, paged."""
    jsonapi.require_role(Role.STAFF)
    club = _get(Club, club_id)
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(
            422,
            "invalid",
            _("Must be one of: %(values)s.", values=", ".join(STATUSES)),
            "status",
        )
    stmt = services.search_members(
        db.session, club, request.args.get("q", ""), status
    ).options(
        contains_eager(Membership.subscriber), selectinload(Membership.consent_text)
    )
    return jsonify(jsonapi.paginate(stmt, Membership.id, membership_json))


@bp.post("/clubs/<int:club_id>/members")
@describe(
    "Add a person to a club",
    role="editor",
    response="Membership",
    status=201,
    body="MembershipCreate",
    errors=(409,),
)
def add_member(club_id: int):
    """Add a known subscriber or an address to a club, recording consent.

    Without `consent_given`, the new member is unconfirmed and gets the
    confirmation mail (in any club), as when added on the web.
    """
    user = jsonapi.require_role(Role.EDITOR)
    club = _get(Club, club_id)
    body = jsonapi.json_body("MembershipCreate")
    consent_given = body.pop("consent_given", False)
    tracking_consent = body.pop("tracking_consent", False)
    person = _member_subscriber(club, body)
    membership = services.join_club(
        db.session,
        club,
        person,
        source=f"api:{user.id}",
        tracking_consent=tracking_consent,
        consent_given=consent_given,
    )
    db.session.commit()
    sent = membership.status == MembershipStatus.UNCONFIRMED
    if sent:
        send_confirmation(db.session, membership)
    return _created(membership_json(membership, confirmation_sent=sent))


def _member_subscriber(club: Club, body: dict[str, Any]) -> Subscriber:
    """The person to add: a subscriber by id, or found or created by address."""
    if "subscriber_id" in body:
        extra = sorted(set(body) - {"subscriber_id"})
        if extra:
            raise ApiError(
                422,
                "invalid",
                _("Give either subscriber_id or the person's details, not both."),
                extra[0],
            )
        person = _get(Subscriber, body["subscriber_id"])
        if person.library_id != club.library_id:
            raise ApiError(
                422,
                "invalid",
                _("The subscriber belongs to another library than the club."),
                "subscriber_id",
            )
        return person
    if "email" not in body:
        raise ApiError(422, "required", _("Give subscriber_id or email."), "email")
    _address, key = services.normalize_email(body["email"])
    person = services.find_subscriber(db.session, club.library_id, key)
    if person is None:
        body.setdefault("language", club.language)
        person = services.create_subscriber(
            db.session, club.library, body.pop("email"), **body
        )
    return person


@bp.get("/memberships/<int:membership_id>")
@describe("Show a membership", role="staff", response="Membership")
def membership(membership_id: int):
    """One membership with its consent record."""
    jsonapi.require_role(Role.STAFF)
    return jsonify(membership_json(_get(Membership, membership_id)))


@bp.patch("/memberships/<int:membership_id>")
@describe(
    "Change a membership's status or tracking consent",
    role="editor",
    response="Membership",
    body="MembershipUpdate",
    errors=(409,),
)
def update_membership(membership_id: int):
    """Move a membership along the allowed status changes.

    A member who left can only be re-invited (back to unconfirmed): the
    confirmation mail goes out again, and only the person can confirm.
    Tracking consent can be switched off here, never on (it is the person's).
    """
    user = jsonapi.require_role(Role.EDITOR)
    membership = _get(Membership, membership_id)
    body = jsonapi.json_body("MembershipUpdate")
    sent = services.staff_update_membership(
        db.session,
        membership,
        by=f"api:{user.id}",
        status=MembershipStatus(body["status"]) if "status" in body else None,
        tracking_consent=body.get("tracking_consent"),
    )
    db.session.commit()
    if sent:
        send_confirmation(db.session, membership)
    return jsonify(membership_json(membership, confirmation_sent=sent))


@bp.delete("/memberships/<int:membership_id>")
@describe("Take a person off a club's list", role="editor", status=204)
def delete_membership(membership_id: int):
    """Remove a membership; the person stays known to the library."""
    jsonapi.require_role(Role.EDITOR)
    db.session.delete(_get(Membership, membership_id))
    db.session.commit()
    return "", 204


# ---------------------------------------------------------------- imports


@bp.post("/clubs/<int:club_id>/imports")
@describe(
    "Import people into a club",
    role="editor",
    response="ImportJob",
    status=201,
    body="ImportRequest",
)
def create_import(club_id: int):
    """Import up to 10,000 records at once and report on every row.

    Rows that are not imported (bad address, duplicate, erased, already a member)
    are listed with the reason; the good ones are imported all the same.
    """
    user = jsonapi.require_role(Role.EDITOR)
    club = _get(Club, club_id)
    body = _import_body()
    consent_given = body.get("consent_given", False)
    records, report = _import_records(body["records"])
    now = utcnow()
    job = ImportJob(
        club_id=club.id,
        created_by_id=user.id,
        status=ImportStatus.RUNNING,
        filename="api",
        content=b"",
        consent_given=consent_given,
        total_rows=len(body["records"]),
        started_at=now,
    )
    db.session.add(job)
    db.session.flush()
    _save_issues(job.id, report)
    result = import_records(
        db.session,
        club,
        records,
        consent_given=consent_given,
        source=f"api:{user.id}",
        job_id=job.id,
    )
    report.counts.update(result.counts)
    job.processed_rows = job.total_rows
    job.status = ImportStatus.DONE
    job.finished_at = utcnow()
    if not consent_given and result.counts[IMPORTED]:
        # The scheduler queues the mails (subscribers.mails): building thousands
        # of them here would keep the client waiting for minutes.
        report.counts[CONFIRMATIONS_PENDING] = result.counts[IMPORTED]
    job.counts = dict(report.counts)
    db.session.commit()
    return _created(import_json(job))


def _import_body() -> dict[str, Any]:
    """The import request, with a clear 413 above the record limit.

    Records are checked one by one later, so one bad record is a row in the
    report rather than a refused request.
    """
    body = jsonapi.json_body("ImportRequest", shallow=("records",))
    if len(body["records"]) > MAX_IMPORT_RECORDS:
        raise _too_many_records()
    if not body["records"]:
        raise ApiError(422, "required", _("Give at least one record."), "records")
    return body


def _too_many_records() -> ApiError:
    return ApiError(
        413,
        "too_many_records",
        _(
            "At most %(count)d records per request; split the import.",
            count=MAX_IMPORT_RECORDS,
        ),
        "records",
    )


def _import_records(raw: list[Any]) -> tuple[list[ImportRecord], ImportReport]:
    """The import engine's records; ill-formed ones go straight into the report."""
    records, report = [], ImportReport()
    for row, item in enumerate(raw, start=1):
        try:
            if not _plain_record(item):  # the full check, for its precise message
                jsonapi.check(item, {"$ref": "#/components/schemas/ImportRecord"})
        except jsonapi.Invalid as exc:
            email = item.get("email") if isinstance(item, dict) else None
            record = ImportRecord(row, email if isinstance(email, str) else "")
            where = f"{exc.field}: " if exc.field else ""
            report.add_issue(record, INVALID_ROW, where + exc.message)
            continue
        records.append(ImportRecord(row_number=row, **item))
    return records, report


RECORD_FIELDS = {
    "email": (str, 320),
    "first_name": (str, 200),
    "last_name": (str, 200),
    "language": (str, 8),
    "tracking_consent": (bool, 0),
    "attributes": (dict, 0),
}
ATTRIBUTE_VALUE_TYPES = (str, int, float, bool, type(None))


def _plain_record(item: Any) -> bool:
    """A quick yes for the usual well-formed record (the full check is slower).

    The import engine checks languages and attribute limits itself.
    """
    if type(item) is not dict or type(item.get("email")) is not str:
        return False
    for name, value in item.items():
        kind, limit = RECORD_FIELDS.get(name, (None, 0))
        if type(value) is not kind:
            return False
        if kind is str and (len(value) > limit or "\x00" in value):
            return False
        if kind is dict and not _plain_attributes(value):
            return False
    return True


def _plain_attributes(attributes: dict) -> bool:
    return len(attributes) <= services.MAX_ATTRIBUTES and all(
        type(value) in ATTRIBUTE_VALUE_TYPES
        and "\x00" not in key
        and not (type(value) is str and "\x00" in value)
        for key, value in attributes.items()
    )


def _save_issues(job_id: int, report: ImportReport) -> None:
    if report.issues:
        db.session.execute(
            insert(ImportIssue),
            [
                {
                    "job_id": job_id,
                    "row_number": issue["row"],
                    "email": issue["email"],
                    "outcome": issue["outcome"],
                    "message": issue["message"][:500],
                }
                for issue in report.issues
            ],
        )


def import_json(job: ImportJob) -> dict[str, Any]:
    """An import job's state and counts, with the first issues by row."""
    limit = jsonapi.int_arg("limit", 1000, 1, 10_000)
    issues = db.session.scalars(
        select(ImportIssue)
        .where(ImportIssue.job_id == job.id)
        .order_by(ImportIssue.row_number, ImportIssue.id)
        .limit(limit)
    )
    return {
        "id": job.id,
        "club_id": job.club_id,
        "status": job.status.value,
        "filename": job.filename,
        "consent_given": job.consent_given,
        "total_rows": job.total_rows,
        "processed_rows": job.processed_rows,
        "counts": job.counts or {},
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "issues": [
            {
                "row": i.row_number,
                "email": i.email,
                "outcome": i.outcome,
                "message": i.message,
            }
            for i in issues
        ],
    }


@bp.get("/imports/<int:job_id>")
@describe(
    "Show an import's progress and report",
    role="staff",
    response="ImportJob",
    query={
        "limit": {
            "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
            "description": "How many issues to list (default 1000), by row.",
        }
    },
)
def import_job(job_id: int):
    """An import's status, counts and the rows that were not imported."""
    jsonapi.require_role(Role.STAFF)
    return jsonify(import_json(_get(ImportJob, job_id)))


# ---------------------------------------------------------------- the description


@bp.get("/openapi.json")
@describe("This API's OpenAPI 3.1 description", role="anyone")
def openapi():
    """The OpenAPI 3.1 description of this API (no token needed)."""
    from flask import current_app

    return jsonify(build_document(current_app))
