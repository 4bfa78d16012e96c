"""JSON API for events, templates, campaigns, previews and test sends.

Token-authenticated like the rest of /api (see subscribers/api.py); staff read,
editors write. Another library's object is a 404. A campaign is changed with
PATCH carrying the `version` it was read at: a stale one gets 409 and the
current state, never a silent overwrite.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from flask_babel import gettext as _
from sqlalchemy import select

from accounts.models import Library, Role
from campaigns import compose, sending, services
from campaigns.models import Campaign, Event, Repeat, ScheduleMode
from klubpost import jsonapi
from klubpost.auth import allowed_library_ids
from klubpost.db import db
from klubpost.errors import ApiError
from klubpost.openapi import describe
from klubpost.security import csrf
from subscribers.models import Club

bp = Blueprint("campaigns_api", __name__, url_prefix="/api")
# Token-authenticated and cookie-free, so cross-site request forgery cannot apply.
csrf.exempt(bp)

MAX_BODY = 1024 * 1024


@bp.before_request
def authenticate():
    """Every call needs a valid, unrevoked personal token."""
    jsonapi.authenticate()


def _require(role: Role) -> None:
    jsonapi.require_role(role)


def _owned(model: type, object_id: int, what: str) -> Any:
    """The object if it is in a library the user sees; else 404."""
    obj = jsonapi.get_by_id(model, object_id)
    message = _("There is no such %(what)s.", what=what)
    return jsonapi.found(obj, obj.library_id if obj else None, message)


def _body() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            _("Send the body as JSON, with Content-Type: application/json."),
        )
    if (request.content_length or 0) > MAX_BODY:
        raise ApiError(413, "too_large", _("The request body is too large."))
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", _("The body must be a JSON object."))
    return data


def _invalid(exc: services.CampaignError) -> ApiError:
    db.session.rollback()
    return ApiError(422, "invalid", exc.message, exc.field)


def _library(library_id: Any) -> Library:
    """The library a new object goes to: the user's, or the one named."""
    allowed = allowed_library_ids(g.api_user)
    if library_id is None and len(allowed) == 1:
        library_id = allowed[0]
    if library_id is None:
        raise ApiError(
            422, "invalid", _("Say which library (library_id)."), "library_id"
        )
    if not isinstance(library_id, int) or library_id not in allowed:
        raise ApiError(404, "not_found", _("There is no such library."), "library_id")
    return db.session.get(Library, library_id)


# ----------------------------------------------------------------- events


def event_json(event: Event) -> dict[str, Any]:
    """An event as the API shows it; times with the library's UTC offset."""
    zone = services.library_zone(event.library)
    local = services.utc_to_local
    return {
        "id": event.id,
        "library_id": event.library_id,
        "title": event.title,
        "description": event.description,
        "starts_at": local(event.starts_at, zone).isoformat(),
        "ends_at": local(event.ends_at, zone).isoformat() if event.ends_at else None,
        "timezone": zone,
        "venue": event.venue,
        "image_url": event.image_url,
        "ticket_url": event.ticket_url,
        "club_ids": [c.id for c in event.clubs],
        "materials": event.materials,
    }


def _event_fields(data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - set(services.EVENT_FIELDS) - {"library_id"}
    if unknown:
        field = sorted(unknown)[0]
        raise ApiError(422, "invalid", _("Unknown field."), field)
    return {k: v for k, v in data.items() if k != "library_id"}


@bp.get("/events")
@describe(
    "List events",
    role="staff",
    response="EventList",
    query={"library_id": {"schema": {"type": "integer"}}},
)
def list_events():
    """The events of the libraries the user sees (or of one), soonest first."""
    query = select(Event).where(Event.library_id.in_(allowed_library_ids(g.api_user)))
    if "library_id" in request.args:
        library_id = jsonapi.int_arg("library_id", 0, 1, jsonapi.MAX_ID)
        query = query.where(Event.library_id == library_id)
    rows = db.session.scalars(query.order_by(Event.starts_at, Event.id).limit(1000))
    return jsonify({"items": [event_json(e) for e in rows]})


@bp.post("/events")
@describe(
    "Record an event",
    role="editor",
    response="Event",
    status=201,
    body="EventInput",
    errors=(404,),
)
def create_event():
    """Record an event; times without an offset are in the library's time zone."""
    _require(Role.EDITOR)
    data = _body()
    library = _library(data.get("library_id"))
    try:
        event = services.create_event(db.session, library, _event_fields(data))
    except services.CampaignError as exc:
        raise _invalid(exc) from None
    db.session.commit()
    return jsonify(event_json(event)), 201


@bp.get("/events/<int:event_id>")
@describe("Show an event", role="staff", response="Event")
def get_event(event_id: int):
    """One event."""
    return jsonify(event_json(_owned(Event, event_id, _("event"))))


@bp.patch("/events/<int:event_id>")
@describe("Change an event", role="editor", response="Event", body="EventInput")
def update_event(event_id: int):
    """Change the given fields of an event (e.g. add materials afterwards)."""
    _require(Role.EDITOR)
    event = _owned(Event, event_id, _("event"))
    data = _body()
    try:
        services.apply_event(db.session, event, event.library, _event_fields(data))
    except services.CampaignError as exc:
        raise _invalid(exc) from None
    db.session.commit()
    return jsonify(event_json(event))


@bp.delete("/events/<int:event_id>")
@describe("Delete an event", role="editor", status=204)
def delete_event(event_id: int):
    """Delete an event."""
    _require(Role.EDITOR)
    db.session.delete(_owned(Event, event_id, _("event")))
    db.session.commit()
    return "", 204


# ----------------------------------------------------------------- templates


@bp.get("/templates")
@describe(
    "List the templates a library may use",
    role="staff",
    response="TemplateList",
    query={"library_id": {"schema": {"type": "integer"}}},
    errors=(404, 422),
)
def list_templates():
    """The templates a library may use: own, its consortium's, built-in."""
    library = _library(request.args.get("library_id", type=int))
    items = [
        {
            "template": c.ref,
            "name": c.name,
            "kind": c.kind,
            "language": c.language,
            "shared": c.shared,
            "builtin": c.builtin,
        }
        for c in services.template_choices(db.session, library)
    ]
    return jsonify({"items": items})


# ----------------------------------------------------------------- campaigns

CAMPAIGN_FIELDS = {
    "kind",
    "event_id",
    "subject",
    "preheader",
    "template",
    "blocks",
    "custom_mjml",
}


def _campaign_fields(data: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(data) - allowed
    if unknown:
        raise ApiError(422, "invalid", _("Unknown field."), sorted(unknown)[0])
    return data


@bp.get("/clubs/<int:club_id>/campaigns")
@describe("List a club's campaigns", role="staff", response="CampaignList")
def list_campaigns(club_id: int):
    """A club's campaigns, newest first."""
    club = _owned(Club, club_id, _("club"))
    items = [
        services.campaign_data(c) for c in services.club_campaigns(db.session, club)
    ]
    return jsonify({"items": items})


@bp.post("/clubs/<int:club_id>/campaigns")
@describe(
    "Start a draft",
    role="editor",
    response="Campaign",
    status=201,
    body="CampaignInput",
)
def create_campaign(club_id: int):
    """Start a draft; without a template the kind's built-in one is used."""
    _require(Role.EDITOR)
    club = _owned(Club, club_id, _("club"))
    data = _campaign_fields(_body(), CAMPAIGN_FIELDS)
    if "kind" not in data:
        raise ApiError(422, "invalid", _("This field is required."), "kind")
    try:
        campaign = services.create_campaign(db.session, club, g.api_user, data)
    except services.CampaignError as exc:
        raise _invalid(exc) from None
    db.session.commit()
    return jsonify(services.campaign_data(campaign)), 201


@bp.get("/campaigns/<int:campaign_id>")
@describe("Show a campaign", role="staff", response="Campaign")
def get_campaign(campaign_id: int):
    """One campaign, with the version to send back when changing it."""
    campaign = _owned(Campaign, campaign_id, _("campaign"))
    return jsonify(services.campaign_data(campaign))


@bp.patch("/campaigns/<int:campaign_id>")
@describe(
    "Change a draft (with the version read)",
    role="editor",
    response="Campaign",
    body="CampaignInput",
    errors=(409,),
)
def update_campaign(campaign_id: int):
    """Change a draft; `version` must be the one read, else 409 with the current."""
    _require(Role.EDITOR)
    campaign = _owned(Campaign, campaign_id, _("campaign"))
    data = _campaign_fields(_body(), CAMPAIGN_FIELDS | {"version"})
    if "version" not in data:
        raise ApiError(422, "invalid", _("The draft's version is missing."), "version")
    try:
        services.update_campaign(
            db.session, campaign, g.api_user, data, data["version"]
        )
    except services.VersionConflict as exc:
        db.session.rollback()
        current = services.campaign_data(db.session.get(Campaign, campaign_id))
        body = {"code": "conflict", "message": exc.message, "field": "version"}
        return jsonify({"error": body, "current": current}), 409
    except services.NotEditable as exc:
        db.session.rollback()
        raise ApiError(409, "not_editable", exc.message, exc.field) from None
    except services.CampaignError as exc:
        raise _invalid(exc) from None
    db.session.commit()
    return jsonify(services.campaign_data(campaign))


@bp.delete("/campaigns/<int:campaign_id>")
@describe("Delete a draft", role="editor", status=204, errors=(409,))
def delete_campaign(campaign_id: int):
    """Delete a draft."""
    _require(Role.EDITOR)
    campaign = _owned(Campaign, campaign_id, _("campaign"))
    if campaign.status != "draft":
        raise ApiError(409, "not_editable", _("Only drafts can be deleted."), "status")
    db.session.delete(campaign)
    db.session.commit()
    return "", 204


@bp.post("/campaigns/<int:campaign_id>/preview")
@describe(
    "Render a draft: HTML, text, warnings",
    role="staff",
    response="Preview",
    body="PreviewInput",
)
def preview(campaign_id: int):
    """Render the saved draft, or the given changes to it: html, text, warnings."""
    from campaigns.rendering import RenderError

    campaign = _owned(Campaign, campaign_id, _("campaign"))
    data = _campaign_fields(_body(), CAMPAIGN_FIELDS | {"subscriber_id"})
    try:
        draft = compose.draft_from(db.session, campaign, data)
        result = compose.preview(db.session, campaign, draft, data.get("subscriber_id"))
    except services.CampaignError as exc:
        raise _invalid(exc) from None
    except RenderError as exc:
        body = {
            "code": "render_error",
            "message": exc.message,
            "field": "custom_mjml" if draft.custom_mjml else "template",
            "line": exc.line,
        }
        return jsonify({"error": body}), 422
    return jsonify(result)


@bp.post("/campaigns/<int:campaign_id>/test-send")
@describe(
    "Send the saved draft as a test",
    role="editor",
    response="TestSendResult",
    body="TestSend",
)
def test_send(campaign_id: int):
    """Send the saved draft, marked as a test, to up to five addresses."""
    from campaigns.rendering import RenderError

    _require(Role.EDITOR)
    campaign = _owned(Campaign, campaign_id, _("campaign"))
    data = _campaign_fields(_body(), {"addresses", "subscriber_id"})
    if "addresses" not in data:
        raise ApiError(422, "invalid", _("Give at least one address."), "addresses")
    try:
        mails = compose.send_test(
            db.session, campaign, data["addresses"], data.get("subscriber_id")
        )
    except services.CampaignError as exc:
        raise _invalid(exc) from None
    except RenderError as exc:
        db.session.rollback()
        raise ApiError(422, "render_error", str(exc), "template") from None
    return jsonify(
        {
            "sent": [m.recipient for m in mails if m.status == "sent"],
            "queued": [m.recipient for m in mails if m.status != "sent"],
        }
    )


# ----------------------------------------------------------------- sending


def _schedule_json(campaign: Campaign) -> dict[str, Any]:
    state = sending.progress(db.session, campaign)
    return {
        **services.campaign_data(campaign),
        "schedule_mode": campaign.schedule_mode.value
        if campaign.schedule_mode
        else None,
        "offset_minutes": campaign.offset_minutes,
        "send_at": campaign.send_at.isoformat() if campaign.send_at else None,
        "repeat": campaign.repeat.value if campaign.repeat else None,
        "previous_issue_id": campaign.previous_issue_id,
        "progress": state.as_dict(),
    }


def _steer(campaign_id: int, action) -> Any:
    _require(Role.EDITOR)
    campaign = _owned(Campaign, campaign_id, _("campaign"))
    try:
        action(campaign)
    except (sending.SendingError, services.CampaignError) as exc:
        db.session.rollback()
        status = 409 if exc.field in (None, "status") else 422
        code = "conflict" if status == 409 else "invalid"
        raise ApiError(status, code, exc.message, exc.field) from None
    db.session.commit()
    return jsonify(_schedule_json(campaign))


@bp.post("/campaigns/<int:campaign_id>/schedule")
@describe(
    "Schedule a draft: now, at a time, or relative to its event",
    role="editor",
    response="Sending",
    body="Schedule",
    errors=(404, 409, 422),
)
def schedule_campaign(campaign_id: int):
    """Schedule a draft: now, at `send_at`, or relative to its event."""
    _require(Role.EDITOR)
    _owned(Campaign, campaign_id, _("campaign"))  # 404 before looking at the body
    data = _campaign_fields(_body(), {"mode", "send_at", "offset_minutes", "repeat"})

    def act(campaign: Campaign) -> None:
        try:
            mode = ScheduleMode(data.get("mode"))
        except ValueError:
            raise sending.SendingError(
                _("Choose now, fixed, before_event or after_event."), "mode"
            ) from None
        offset = data.get("offset_minutes", 0)
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise sending.SendingError(_("Give the offset in whole minutes."), "offset")
        try:
            # Left out, a repeating issue keeps repeating; null stops it.
            repeat = (
                (Repeat(data["repeat"]) if data["repeat"] else None)
                if "repeat" in data
                else campaign.repeat
            )
        except (ValueError, TypeError):
            raise sending.SendingError(
                _("Choose one of: %(values)s.", values=", ".join(Repeat)), "repeat"
            ) from None
        zone = services.library_zone(campaign.library)
        at = services.parse_local(data.get("send_at"), zone, "send_at")
        sending.schedule(
            campaign, mode, send_at=at, offset_minutes=offset, repeat=repeat
        )

    return _steer(campaign_id, act)


@bp.post("/campaigns/<int:campaign_id>/unschedule")
@describe(
    "Take a scheduled campaign back to a draft",
    role="editor",
    response="Sending",
    errors=(404, 409),
)
def unschedule_campaign(campaign_id: int):
    """Take a scheduled campaign back to a draft."""
    return _steer(campaign_id, sending.unschedule)


@bp.post("/campaigns/<int:campaign_id>/pause")
@describe(
    "Pause a campaign that is sending",
    role="editor",
    response="Sending",
    errors=(404, 409),
)
def pause_campaign(campaign_id: int):
    """Pause a campaign that is sending."""
    return _steer(campaign_id, sending.pause)


@bp.post("/campaigns/<int:campaign_id>/resume")
@describe(
    "Resume a paused campaign", role="editor", response="Sending", errors=(404, 409)
)
def resume_campaign(campaign_id: int):
    """Resume a paused campaign."""
    return _steer(campaign_id, sending.resume)


@bp.post("/campaigns/<int:campaign_id>/cancel")
@describe(
    "Cancel a campaign for good", role="editor", response="Sending", errors=(404, 409)
)
def cancel_campaign(campaign_id: int):
    """Cancel a scheduled, sending or paused campaign for good."""
    return _steer(campaign_id, lambda c: sending.cancel(db.session, c))


@bp.get("/campaigns/<int:campaign_id>/progress")
@describe(
    "The schedule and sending progress",
    role="staff",
    response="Sending",
    errors=(404,),
)
def campaign_progress(campaign_id: int):
    """The schedule and the sending progress of a campaign."""
    campaign = _owned(Campaign, campaign_id, _("campaign"))
    return jsonify(_schedule_json(campaign))
