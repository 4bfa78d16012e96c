"""Check the editor's content blocks and turn them into what the templates show.

The editor sends blocks as JSON dicts; everything in them is plain text or a URL.
Here they become small, validated dicts (paragraphs split, URLs checked, event
times in the event's timezone) that the MJML
templates render with autoescaping on, so editors' text can never become markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time
from flask_babel import gettext as _

URL_SCHEMES = ("http", "https", "mailto")
MAX_TEXT = 20_000
MAX_URL = 2_000


class BlockError(ValueError):
    """A block the editor sent can't be rendered; the message names it."""


@dataclass
class _Where:
    """Which block a problem is in, for messages such as "Block 2 (button): ..."."""

    number: int
    kind: str

    def fail(self, problem: str) -> BlockError:
        """An error naming this block and the problem."""
        return BlockError(
            _(
                "Block %(number)d (%(kind)s): %(problem)s",
                number=self.number,
                kind=self.kind,
                problem=problem,
            )
        )


def _text(where: _Where, block: dict, key: str, *, required: bool) -> str:
    value = block.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise where.fail(_("“%(field)s” must be text.", field=key))
    value = value.strip()
    if required and not value:
        raise where.fail(_("“%(field)s” is empty.", field=key))
    if len(value) > MAX_TEXT:
        raise where.fail(_("“%(field)s” is too long.", field=key))
    return value


def check_url(value: Any, *, allow_empty: bool = False) -> str | None:
    """The URL stripped, if it is an http(s) or mailto address; else a message."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None if allow_empty else _("the link is missing.")
    if not isinstance(value, str):
        return _("the link must be text.")
    value = value.strip()
    parts = urlsplit(value)
    if (
        parts.scheme.lower() not in URL_SCHEMES
        or len(value) > MAX_URL
        or any(c.isspace() or ord(c) < 32 for c in value)
        or (parts.scheme.lower() != "mailto" and not parts.netloc)
    ):
        return _(
            "“%(url)s” is not a web address (it must start with http://, "
            "https:// or mailto:).",
            url=value[:80],
        )
    return None


def _url(where: _Where, block: dict, key: str, *, required: bool) -> str | None:
    value = block.get(key)
    problem = check_url(value, allow_empty=not required)
    if problem:
        raise where.fail(problem)
    return value.strip() if isinstance(value, str) and value.strip() else None


def paragraphs(text: str) -> list[list[str]]:
    """Plain text as paragraphs (split at blank lines) of lines."""
    result = []
    for chunk in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        lines = [line.strip() for line in chunk.split("\n")]
        lines = [line for line in lines if line]
        if lines:
            result.append(lines)
    return result


def _link(where: _Where, raw: Any, position: int) -> dict:
    if not isinstance(raw, dict):
        raise where.fail(_("link %(n)d is not a link.", n=position))
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        raise where.fail(_("link %(n)d has no label.", n=position))
    problem = check_url(raw.get("url"))
    if problem:
        raise where.fail(problem)
    tag = raw.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise where.fail(_("link %(n)d: the tag must be text.", n=position))
    return {
        "label": label.strip(),
        "url": raw["url"].strip(),
        "tag": tag.strip() if tag and tag.strip() else None,
        "track": raw.get("track", True) is not False,
    }


def _text_block(where: _Where, block: dict, events) -> dict:
    heading = _text(where, block, "heading", required=False)
    return {
        "heading": heading or None,
        "paragraphs": paragraphs(_text(where, block, "text", required=True)),
    }


def _image_block(where: _Where, block: dict, events) -> dict:
    return {
        "url": _url(where, block, "url", required=True),
        "alt": _text(where, block, "alt", required=False),
        "link": _url(where, block, "link", required=False),
    }


def _button_block(where: _Where, block: dict, events) -> dict:
    return {
        "label": _text(where, block, "label", required=True),
        "url": _url(where, block, "url", required=True),
    }


def _links_block(where: _Where, block: dict, events) -> dict:
    raw_links = block.get("links")
    if not isinstance(raw_links, list) or not raw_links:
        raise where.fail(_("the list has no links."))
    return {
        "title": _text(where, block, "title", required=False) or None,
        "links": [_link(where, raw, n) for n, raw in enumerate(raw_links, 1)],
    }


def _event_block(where: _Where, block: dict, events) -> dict:
    event_id = block.get("event_id")
    if isinstance(event_id, str) and event_id.isascii() and event_id.isdigit():
        event_id = int(event_id)  # as a form field sends it
    if not isinstance(event_id, int) or isinstance(event_id, bool):
        raise where.fail(_("no event chosen."))
    event = events.get(event_id)
    if event is None:
        raise where.fail(_("event %(id)d is not available.", id=event_id))
    return event_view(event, where)


BLOCK_TYPES = {
    "text": _text_block,
    "image": _image_block,
    "button": _button_block,
    "event": _event_block,
    "links": _links_block,
}


def check_blocks(blocks: Any, events: dict) -> list[dict]:
    """The editor's blocks, validated, as dicts for the templates."""
    if not isinstance(blocks, list):
        raise BlockError(_("The content blocks must be a list."))
    views = []
    for number, block in enumerate(blocks, 1):
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str) or kind not in BLOCK_TYPES:
            shown = kind if isinstance(kind, str) else "?"
            raise _Where(number, shown[:40]).fail(_("unknown type of block."))
        view = BLOCK_TYPES[kind](_Where(number, kind), block, events)
        view["type"] = kind
        view["number"] = number
        views.append(view)
    return views


def event_view(event: Any, where: _Where | None = None) -> dict:
    """An EventInfo as the templates show it: its times in its own timezone."""
    where = where or _Where(0, "event")
    try:
        zone = ZoneInfo(event.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise where.fail(
            _("unknown timezone “%(tz)s”.", tz=str(event.timezone)[:60])
        ) from exc
    starts = _local(event.starts_at, zone, where)
    ends = _local(event.ends_at, zone, where) if event.ends_at else None
    for label, url in (("image", event.image_url), ("ticket", event.ticket_url)):
        problem = check_url(url, allow_empty=True)
        if problem:
            raise where.fail(f"{event.title} ({label}): {problem}")
    materials = [
        _link(
            where, {"label": m.label, "url": m.url, "tag": m.tag, "track": m.track}, n
        )
        for n, m in enumerate(event.materials or [], 1)
    ]
    return {
        "title": event.title,
        "paragraphs": paragraphs(event.description or ""),
        "starts": starts,
        "ends": ends,
        "venue": event.venue or None,
        "image_url": event.image_url or None,
        "ticket_url": event.ticket_url or None,
        "materials": materials,
    }


def _local(moment: datetime, zone: ZoneInfo, where: _Where) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise where.fail(_("the event's time has no timezone."))
    return moment.astimezone(zone)


def when_text(starts: datetime, ends: datetime | None, lang: str) -> str:
    """ "Thursday, December 10, 2026, 7:00 PM – 9:00 PM" in the mail's language."""
    day = format_date(starts, "full", locale=lang)
    start_time = format_time(starts, "short", locale=lang)
    if ends is None:
        return f"{day}, {start_time}"
    end_time = format_time(ends, "short", locale=lang)
    if ends.date() == starts.date():
        return f"{day}, {start_time}–{end_time}"
    end_day = format_date(ends, "full", locale=lang)
    return f"{day}, {start_time} – {end_day}, {end_time}"
