"""The bounce webhook: HTTP mail providers and relays report bounces and complaints.

`POST /api/bounces` takes a whole report as `message/rfc822` (a DSN or an ARF
complaint, as a mail server would deliver it) or one event as JSON. It is
authenticated by a library's API token (an editor's; only that library's members
can be touched) or by the installation's shared secret BOUNCE_WEBHOOK_SECRET
(`Authorization: Bearer <secret>`; any library, but only by our own VERP address
or Message-ID). What is done is decided in campaigns/bounces.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_babel import gettext as _
from werkzeug.exceptions import RequestEntityTooLarge

from accounts.models import Role
from campaigns import bounces
from klubpost import jsonapi
from klubpost.db import db, utcnow
from klubpost.errors import ApiError
from klubpost.openapi import describe
from klubpost.security import csrf

bp = Blueprint("bounce_api", __name__, url_prefix="/api")
# Token- or secret-authenticated and cookie-free: no cross-site forgery to fear.
csrf.exempt(bp)

RAW = "message/rfc822"
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


@bp.post("/bounces")
@describe(
    "Report a bounce or a complaint",
    role="editor",
    response="BounceResult",
    body="BounceInput",
    raw_body=RAW,
)
def report_bounce():
    """Act on one bounce or complaint (a raw report or a JSON event)."""
    library_ids = _authenticate()
    if request.mimetype == RAW:
        result = _raw_report(library_ids)
    elif request.mimetype == "application/json":
        result = _json_event(jsonapi.json_body("BounceInput"), library_ids)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            _("Send a report as message/rfc822 or an event as application/json."),
        )
    return jsonify(result.as_dict())


def _authenticate() -> list[int] | None:
    """The libraries the caller may touch; None (all) for the shared secret."""
    secret = current_app.config.get("BOUNCE_WEBHOOK_SECRET") or ""
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if secret and hmac.compare_digest(given.encode(), secret.encode()):
        return None
    jsonapi.authenticate()
    jsonapi.require_role(Role.EDITOR)
    return jsonapi.visible_library_ids()


def _raw_report(library_ids: list[int] | None) -> bounces.Processed:
    jsonapi.limit_body()
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge as exc:
        raise jsonapi.too_large() from exc
    if not raw.strip():
        raise ApiError(400, "empty", _("The body is empty: send the report."))
    result = bounces.process_message(db.session, raw, "webhook", library_ids)
    if result.ignored == "forged":
        raise ApiError(
            422,
            "forged",
            _(
                "The report names a bounce address whose signature is wrong; "
                "nothing was changed."
            ),
        )
    if result.ignored == "not a report":
        raise ApiError(
            422,
            "not_a_report",
            _(
                "The message is neither a delivery status notification nor a "
                "complaint; nothing was changed."
            ),
        )
    return result


def _json_event(data: dict[str, Any], library_ids: list[int] | None):
    email = data.get("email", "").strip()
    message_id = data.get("message_id", "").strip()
    if not email and not message_id:
        raise ApiError(422, "required", _("Give the email or the message_id."), "email")
    if data["type"] == "complaint":
        kind = bounces.Kind.COMPLAINT
        status = ""
    else:
        status = data.get("status", "").strip()
        if not _STATUS.match(status) or status.startswith("2"):
            raise ApiError(
                422,
                "invalid",
                _("A bounce needs its status code, e.g. 5.1.1 or 4.2.2."),
                "status",
            )
        kind = bounces.classify(status, None, data.get("diagnostic", ""))
    finding = bounces.Finding(
        kind, email, status, " ".join(data.get("diagnostic", "").split())
    )
    report = bounces.Report(
        digest=_event_digest(data, library_ids),
        findings=[finding],
        message_ids=[f"<{message_id.strip('<>')}>"] if message_id else [],
    )
    return bounces.apply(db.session, report, "webhook", library_ids)


def _event_digest(data: dict[str, Any], library_ids: list[int] | None) -> str:
    """The same event from the same caller on the same day is one event: a
    provider's retries change nothing, a later bounce of another mail counts."""
    key = {"event": data, "caller": library_ids, "day": utcnow().date().isoformat()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
