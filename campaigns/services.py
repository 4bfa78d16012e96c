"""Events, templates and campaign drafts: plain functions raising domain errors.

Times: an editor types an event's start in the library's time zone; it is stored
in UTC. `local_to_utc` does that conversion with zoneinfo and refuses wall-clock
times that do not exist (the hour skipped when clocks go forward).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_babel import gettext as _
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from accounts.models import Library, User
from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Event,
    Template,
)
from klubpost.db import get_by_id, utcnow
from subscribers.models import Club

LANGUAGES = ("da", "nl", "en")
BLOCK_TYPES = ("text", "image", "button", "event", "links")
MAX_BLOCKS = 60
MAX_LINKS = 50
MAX_TEXT = 20_000
MAX_MJML = 200_000
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class CampaignError(Exception):
    """Bad input for an event, template or campaign; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


class VersionConflict(CampaignError):
    """Someone else saved the draft since this editor loaded it."""

    def __init__(self, campaign: Campaign) -> None:
        super().__init__(
            _(
                "Someone else saved this draft while you were editing it. "
                "Your text is still in the form: reload to see their version, "
                "or compare and save again."
            ),
            "version",
        )
        self.campaign = campaign


class NotEditable(CampaignError):
    """The campaign is no longer a draft."""


# ----------------------------------------------------------------- time zones


# Events and sending times are within a library's planning horizon; far-off
# years are typing errors (and year 1 or 9999 can't even change time zone).
MIN_YEAR, MAX_YEAR = 2000, 2100


def local_to_utc(value: datetime, timezone: str) -> datetime:
    """A naive wall-clock time in `timezone` as an aware UTC datetime.

    In the autumn hour that happens twice the first one is meant (fold=0);
    a time in the spring gap does not exist and is refused.
    """
    zone = ZoneInfo(timezone)
    local = value.replace(tzinfo=zone, fold=0)
    utc = local.astimezone(ZoneInfo("UTC"))
    if utc.astimezone(zone).replace(tzinfo=None) != value:
        raise CampaignError(
            _(
                "%(time)s does not exist in %(zone)s: the clocks skip that hour.",
                time=value.strftime("%Y-%m-%d %H:%M"),
                zone=timezone,
            ),
            "starts_at",
        )
    return utc


def utc_to_local(value: datetime | None, timezone: str) -> datetime | None:
    """An aware UTC datetime as an aware datetime in `timezone`."""
    return value.astimezone(ZoneInfo(timezone)) if value else None


def parse_local(text: str | None, timezone: str, field: str) -> datetime | None:
    """Parse "YYYY-MM-DDTHH:MM" (a datetime-local input) in `timezone` to UTC.

    A value with its own offset (ISO 8601, as API clients send) is taken as is.
    """
    if text is None or not str(text).strip():
        return None
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise CampaignError(
            _("Enter a date and time such as 2026-12-03 19:30."), field
        ) from None
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise CampaignError(
            _(
                "Enter a date from %(first)d to %(last)d.",
                first=MIN_YEAR,
                last=MAX_YEAR,
            ),
            field,
        )
    if value.tzinfo is not None:
        return value.astimezone(ZoneInfo("UTC"))
    try:
        return local_to_utc(value, timezone)
    except CampaignError as exc:
        exc.field = field
        raise


def library_zone(library: Library) -> str:
    """The library's IANA time zone name (UTC if it is unknown)."""
    try:
        ZoneInfo(library.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return library.timezone


# ----------------------------------------------------------------- checks


def check_url(
    value: Any, field: str, required: bool = False, mailto: bool = False
) -> str | None:
    """An http(s) URL (or a mailto: one if allowed), or None when empty."""
    if value is not None and not isinstance(value, str):
        raise CampaignError(_("Enter a link."), field)
    value = (value or "").strip()
    if not value:
        if required:
            raise CampaignError(_("Enter a link."), field)
        return None
    parts = urlsplit(value)
    if mailto and parts.scheme == "mailto" and len(value) <= 2000 and parts.path:
        return value
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(value) > 2000
        or any(c.isspace() for c in value)
    ):
        raise CampaignError(
            _("Enter a full link starting with https:// or http://."), field
        )
    return value


# Control characters (CR, LF, tab...) and Unicode line/paragraph separators.
LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})


def check_text(
    value: Any, field: str, limit: int, required: bool = False, *, line: bool = False
) -> str:
    """A stripped string of at most `limit` characters (`line`: without line
    breaks or other control characters, as a mail header needs)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise CampaignError(_("Enter text."), field)
    value = value.strip()
    if line and any(unicodedata.category(c) in LINE_BREAKING for c in value):
        raise CampaignError(_("Keep this on one line."), field)
    if required and not value:
        raise CampaignError(_("This field is required."), field)
    if len(value) > limit:
        raise CampaignError(
            _("Keep this under %(limit)d characters.", limit=limit), field
        )
    return value


def check_color(value: str | None, field: str) -> str:
    """A #rrggbb colour, lower-cased."""
    value = (value or "").strip()
    if not HEX_COLOR.match(value):
        raise CampaignError(_("Enter a colour such as #1f4e79."), field)
    return value.lower()


def check_materials(rows: Any) -> list[dict[str, Any]]:
    """An event's materials: a list of {label, url, tag}."""
    if rows is None:
        return []
    if not isinstance(rows, list) or len(rows) > MAX_LINKS:
        raise CampaignError(
            _("Give at most %(limit)d materials.", limit=MAX_LINKS), "materials"
        )
    materials = []
    for row in rows:
        if not isinstance(row, dict):
            raise CampaignError(
                _("Each material needs a label and a link."), "materials"
            )
        materials.append(
            {
                "label": check_text(row.get("label"), "materials", 200, required=True),
                "url": check_url(row.get("url"), "materials", required=True),
                "tag": check_text(row.get("tag"), "materials", 50) or None,
            }
        )
    return materials


def parse_material_lines(text: str) -> list[dict[str, Any]]:
    """Materials typed one per line as "label | link | tag" (the tag optional)."""
    rows = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 2 or len(parts) > 3:
            raise CampaignError(
                _("Line %(line)d: write it as label | link | tag.", line=number),
                "materials",
            )
        rows.append({"label": parts[0], "url": parts[1], "tag": (parts + [""])[2]})
    return check_materials(rows)


def material_lines(materials: list[dict[str, Any]]) -> str:
    """The inverse of `parse_material_lines`, for the edit form."""
    return "\n".join(
        " | ".join(p for p in (m["label"], m["url"], m.get("tag") or "") if p)
        for m in materials
    )


# ----------------------------------------------------------------- events


EVENT_FIELDS = (
    "title",
    "description",
    "starts_at",
    "ends_at",
    "venue",
    "image_url",
    "ticket_url",
    "club_ids",
    "materials",
)


def _own_clubs(session: Session, library: Library, club_ids: Any) -> list[Club]:
    if club_ids is None:
        return []
    if not isinstance(club_ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in club_ids
    ):
        raise CampaignError(_("Choose clubs by their ids."), "club_ids")
    clubs = session.scalars(
        select(Club).where(Club.library_id == library.id, Club.id.in_(club_ids))
    ).all()
    if len(clubs) != len(set(club_ids)):
        raise CampaignError(_("One of these clubs does not exist."), "club_ids")
    return list(clubs)


def apply_event(
    session: Session, event: Event, library: Library, data: dict[str, Any]
) -> Event:
    """Set an event's fields from `data` (only the keys present); checks them all."""
    zone = library_zone(library)
    if "title" in data:
        event.title = check_text(data["title"], "title", 200, required=True)
    if "description" in data:
        event.description = check_text(data["description"], "description", MAX_TEXT)
    if "venue" in data:
        event.venue = check_text(data["venue"], "venue", 300)
    for field in ("image_url", "ticket_url"):
        if field in data:
            setattr(event, field, check_url(data[field], field))
    for field in ("starts_at", "ends_at"):
        if field in data:
            value = data[field]
            parsed = value if isinstance(value, datetime) else None
            if parsed is None:
                parsed = parse_local(value, zone, field)
            elif parsed.tzinfo is None:
                parsed = local_to_utc(parsed, zone)
            setattr(event, field, parsed)
    if event.starts_at is None:
        raise CampaignError(_("When does the event start?"), "starts_at")
    if event.ends_at is not None and event.ends_at < event.starts_at:
        raise CampaignError(_("The event cannot end before it starts."), "ends_at")
    if "club_ids" in data:
        event.clubs = _own_clubs(session, library, data["club_ids"])
    if "materials" in data:
        event.materials = check_materials(data["materials"])
    if event.id is not None:
        from campaigns.sending import follow_event

        # Newsletters timed relative to the event move with it.
        follow_event(session, event)
    return event


def create_event(session: Session, library: Library, data: dict[str, Any]) -> Event:
    """A new event of `library`."""
    event = Event(library_id=library.id, materials=[])
    apply_event(session, event, library, {"title": None, **data})
    session.add(event)
    session.flush()
    return event


def library_events(session: Session, library: Library, upcoming_only=False):
    """The library's events, soonest first."""
    query = select(Event).where(Event.library_id == library.id)
    if upcoming_only:
        query = query.where(Event.starts_at >= utcnow())
    return session.scalars(query.order_by(Event.starts_at, Event.id)).all()


# ----------------------------------------------------------------- templates


@dataclass(frozen=True)
class TemplateChoice:
    """A template an editor may pick: a built-in one or a stored one."""

    ref: str  # "builtin:<key>" or "template:<id>"
    name: str
    kind: str
    language: str
    shared: bool = False
    builtin: bool = False


def builtin_templates() -> list[Any]:
    """The built-in MJML templates (from the rendering module)."""
    from campaigns.rendering import builtin_templates as load

    return load()


def builtin_by_key(key: str | None) -> Any | None:
    """One built-in template by its key, or None."""
    return next((t for t in builtin_templates() if t.key == key), None)


def usable_templates_query(library: Library):
    """The stored templates `library` may use: its own and its consortium's."""
    owners = [Template.library_id == library.id]
    if library.consortium_id is not None:
        owners.append(Template.consortium_id == library.consortium_id)
    return select(Template).where(or_(*owners)).order_by(Template.name, Template.id)


def template_choices(session: Session, library: Library) -> list[TemplateChoice]:
    """Every template the library may use, stored ones first."""
    stored = [
        TemplateChoice(
            f"template:{t.id}", t.name, t.kind.value, t.language, shared=t.shared
        )
        for t in session.scalars(usable_templates_query(library))
    ]
    builtin = [
        TemplateChoice(f"builtin:{t.key}", t.name, t.kind, t.language, builtin=True)
        for t in builtin_templates()
    ]
    return stored + builtin


def can_use_template(library: Library, template: Template) -> bool:
    """Whether `library` may use (see) a stored template."""
    if template.library_id is not None:
        return template.library_id == library.id
    return template.consortium_id == library.consortium_id


def can_edit_template(user: User, template: Template) -> bool:
    """Libraries' editors change their own; consortium admins the shared ones."""
    from accounts.models import Role

    if template.consortium_id is not None:
        return (
            user.role == Role.CONSORTIUM_ADMIN
            and user.consortium_id == template.consortium_id
        )
    from klubpost.auth import allowed_library_ids

    return user.has_role(Role.EDITOR) and template.library_id in allowed_library_ids(
        user
    )


def apply_template(template: Template, data: dict[str, Any]) -> Template:
    """Set a stored template's name, kind, language and source; checks them."""
    if "name" in data:
        template.name = check_text(data["name"], "name", 200, required=True)
    if "kind" in data:
        template.kind = check_kind(data["kind"])
    if "language" in data:
        if data["language"] not in LANGUAGES:
            raise CampaignError(_("Choose Danish, Dutch or English."), "language")
        template.language = data["language"]
    if "source" in data:
        template.source = check_text(data["source"], "source", MAX_MJML, required=True)
    return template


def check_kind(value: Any) -> CampaignKind:
    """A campaign kind from its value."""
    try:
        return CampaignKind(value)
    except ValueError:
        raise CampaignError(
            _("Choose before event, after event or regular."), "kind"
        ) from None


# ----------------------------------------------------------------- campaigns


def resolve_template_ref(
    session: Session, library: Library, ref: Any
) -> tuple[str | None, int | None]:
    """("builtin:key" | "template:id") -> (template_key, template_id), checked."""
    if not isinstance(ref, str) or ":" not in ref:
        raise CampaignError(_("Choose a template."), "template")
    scheme, _sep, value = ref.partition(":")
    if scheme == "builtin" and builtin_by_key(value) is not None:
        return value, None
    if scheme == "template":
        template = get_by_id(session, Template, value)
        if template is not None and can_use_template(library, template):
            return None, template.id
    raise CampaignError(_("This template does not exist."), "template")


def template_ref(campaign: Campaign) -> str:
    """The campaign's template as a "builtin:key" / "template:id" reference."""
    if campaign.template_id is not None:
        return f"template:{campaign.template_id}"
    # A deleted template leaves neither: the kind's built-in one takes over.
    key = campaign.template_key or default_template_key(
        CampaignKind(campaign.kind), campaign.club.language
    )
    return f"builtin:{key}"


def default_template_key(kind: CampaignKind, language: str) -> str | None:
    """The built-in template for a kind in a language (English as a fallback)."""
    templates = builtin_templates()
    for lang in (language, "en"):
        for template in templates:
            if template.kind == kind.value and template.language == lang:
                return template.key
    return next((t.key for t in templates if t.kind == kind.value), None)


def check_blocks(session: Session, library: Library, blocks: Any) -> list[dict]:
    """The editor's content blocks, each checked and reduced to its known fields."""
    if not isinstance(blocks, list):
        raise CampaignError(_("The content must be a list of blocks."), "blocks")
    if len(blocks) > MAX_BLOCKS:
        raise CampaignError(
            _("Use at most %(limit)d blocks.", limit=MAX_BLOCKS), "blocks"
        )
    checked = []
    for number, block in enumerate(blocks, start=1):
        try:
            checked.append(_check_block(session, library, block))
        except CampaignError as exc:
            raise CampaignError(
                _("Block %(number)d: %(problem)s", number=number, problem=exc.message),
                "blocks",
            ) from None
    return checked


def _check_block(session: Session, library: Library, block: Any) -> dict:
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        raise CampaignError(_("unknown kind of block."))
    kind = block["type"]
    if kind == "text":
        return {
            "type": "text",
            "heading": check_text(block.get("heading"), "heading", 300) or None,
            "text": check_text(block.get("text"), "text", MAX_TEXT),
        }
    if kind == "image":
        return {
            "type": "image",
            "url": check_url(block.get("url"), "url"),
            "alt": check_text(block.get("alt"), "alt", 300),
            "link": check_url(block.get("link"), "link", mailto=True),
        }
    if kind == "button":
        return {
            "type": "button",
            "label": check_text(block.get("label"), "label", 100),
            "url": check_url(block.get("url"), "url", mailto=True),
        }
    if kind == "event":
        event_id = block.get("event_id")
        event = get_by_id(session, Event, event_id) if type(event_id) is int else None
        if event is None or event.library_id != library.id:
            raise CampaignError(_("choose one of the library's events."))
        return {"type": "event", "event_id": event.id}
    links = block.get("links")
    if not isinstance(links, list) or len(links) > MAX_LINKS:
        raise CampaignError(_("a link list needs a list of links."))
    return {
        "type": "links",
        "title": check_text(block.get("title"), "title", 300),
        "links": [_check_link(link) for link in links],
    }


def _check_link(link: Any) -> dict:
    if not isinstance(link, dict):
        raise CampaignError(_("each link needs a label and a link."))
    return {
        "label": check_text(link.get("label"), "label", 300),
        "url": check_url(link.get("url"), "url", mailto=True),
        "tag": check_text(link.get("tag"), "tag", 50) or None,
        "track": link.get("track") is not False,
    }


def check_event_ref(session: Session, library: Library, event_id: Any) -> int | None:
    """An optional event id of the library."""
    if event_id in (None, ""):
        return None
    event = get_by_id(session, Event, event_id)
    if event is None or event.library_id != library.id:
        raise CampaignError(_("Choose one of the library's events."), "event_id")
    return event.id


def default_blocks(kind: CampaignKind, event_id: int | None) -> list[dict]:
    """A new draft's starting content, so the preview shows a newsletter at once."""
    blocks: list[dict] = [{"type": "text", "heading": None, "text": ""}]
    if event_id is not None:
        blocks.append({"type": "event", "event_id": event_id})
    if kind == CampaignKind.AFTER_EVENT:
        blocks.append({"type": "links", "title": "", "links": []})
    return blocks


def create_campaign(
    session: Session, club: Club, user: User | None, data: dict[str, Any]
) -> Campaign:
    """A new draft for `club`; an empty template means the kind's built-in one."""
    library = club.library
    kind = check_kind(data.get("kind"))
    event_id = check_event_ref(session, library, data.get("event_id"))
    if data.get("template"):
        key, template_id = resolve_template_ref(session, library, data["template"])
    else:
        key, template_id = default_template_key(kind, club.language), None
    campaign = Campaign(
        library_id=library.id,
        club_id=club.id,
        kind=kind,
        event_id=event_id,
        subject=check_text(data.get("subject"), "subject", 300, line=True),
        preheader=check_text(data.get("preheader"), "preheader", 300, line=True),
        template_key=key,
        template_id=template_id,
        blocks=(
            check_blocks(session, library, data["blocks"])
            if data.get("blocks") is not None
            else default_blocks(kind, event_id)
        ),
        custom_mjml=_check_mjml(data.get("custom_mjml")),
        status=CampaignStatus.DRAFT,
        created_by_id=user.id if user else None,
        updated_by_id=user.id if user else None,
    )
    session.add(campaign)
    session.flush()
    return campaign


def _check_mjml(value: Any) -> str | None:
    text = check_text(value, "custom_mjml", MAX_MJML) if value is not None else ""
    return text or None


def update_campaign(
    session: Session,
    campaign: Campaign,
    user: User | None,
    data: dict[str, Any],
    version: Any,
) -> Campaign:
    """Save a draft's changed fields if `version` is still the stored one.

    The version check happens twice: here against what this request loaded, and
    in the UPDATE itself (the mapper's version column), so two saves racing
    between the check and the write cannot both win.
    """
    if campaign.status != CampaignStatus.DRAFT:
        raise NotEditable(_("Only drafts can be changed."), "status")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CampaignError(_("The draft's version is missing."), "version")
    if version != campaign.version:
        raise VersionConflict(campaign)
    library = campaign.library
    changes = _campaign_changes(session, library, data)
    for field, value in changes.items():
        setattr(campaign, field, value)
    campaign.updated_by_id = user.id if user else None
    campaign.updated_at = utcnow()  # a save with no change still counts as a save
    try:
        session.flush()
    except StaleDataError:
        session.rollback()
        fresh = session.get(Campaign, campaign.id)
        raise VersionConflict(fresh) from None
    return campaign


def _campaign_changes(
    session: Session, library: Library, data: dict[str, Any]
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for field in ("subject", "preheader"):
        if field in data:
            changes[field] = check_text(data[field], field, 300, line=True)
    if "kind" in data:
        changes["kind"] = check_kind(data["kind"])
    if "event_id" in data:
        changes["event_id"] = check_event_ref(session, library, data["event_id"])
    if "template" in data:
        key, template_id = resolve_template_ref(session, library, data["template"])
        changes["template_key"], changes["template_id"] = key, template_id
    if "blocks" in data:
        changes["blocks"] = check_blocks(session, library, data["blocks"])
    if "custom_mjml" in data:
        changes["custom_mjml"] = _check_mjml(data["custom_mjml"])
    return changes


def club_campaigns(session: Session, club: Club) -> list[Campaign]:
    """A club's campaigns, newest first."""
    return session.scalars(
        select(Campaign).where(Campaign.club_id == club.id).order_by(Campaign.id.desc())
    ).all()


def campaign_data(campaign: Campaign) -> dict[str, Any]:
    """A campaign as the editor and the API see it."""
    return {
        "id": campaign.id,
        "club_id": campaign.club_id,
        "kind": campaign.kind.value,
        "status": campaign.status.value,
        "event_id": campaign.event_id,
        "subject": campaign.subject,
        "preheader": campaign.preheader,
        "template": template_ref(campaign),
        "blocks": campaign.blocks,
        "custom_mjml": campaign.custom_mjml,
        "version": campaign.version,
        "updated_at": campaign.updated_at.isoformat(),
        "updated_by": campaign.updated_by.name if campaign.updated_by else None,
        "sent_at": campaign.sent_at.isoformat() if campaign.sent_at else None,
    }
