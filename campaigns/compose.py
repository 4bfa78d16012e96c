"""From a draft to a rendered newsletter: preview, test send and web version.

The rendering itself lives in `campaigns.rendering`; this module gathers what it
needs from the database (content, events, brand, club, recipient links) and keeps
recently compiled newsletters in a small cache, so a preview that only changes the
personalisation, or is asked for twice, costs no MJML render at all.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from email.headerregistry import Address
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import Library
from campaigns import services
from campaigns.models import Campaign, Event, Template
from campaigns.services import CampaignError
from klubpost.db import as_id, get_by_id
from klubpost.links import external_url
from klubpost.mail import QueuedMail, deliver_one, new_message, queue_mail
from klubpost.security import sign
from subscribers.models import Club, Membership, Subscriber

MAX_TEST_ADDRESSES = 5
CACHE_SIZE = 128
TEST_PREFIX = "[TEST]"


@dataclass
class Draft:
    """What is rendered: a saved campaign, or the editor's unsaved form."""

    kind: str
    subject: str
    preheader: str
    template: str
    blocks: list[dict]
    custom_mjml: str | None


def draft_of(campaign: Campaign) -> Draft:
    """The saved state of a campaign."""
    return Draft(
        kind=campaign.kind.value,
        subject=campaign.subject,
        preheader=campaign.preheader,
        template=services.template_ref(campaign),
        blocks=campaign.blocks,
        custom_mjml=campaign.custom_mjml,
    )


def draft_from(session: Session, campaign: Campaign, data: dict[str, Any]) -> Draft:
    """The editor's unsaved form over the saved campaign, checked like a save."""
    library = campaign.library
    saved = draft_of(campaign)
    template = data.get("template", saved.template)
    services.resolve_template_ref(session, library, template)
    blocks = data.get("blocks", saved.blocks)
    return Draft(
        kind=services.check_kind(data.get("kind", saved.kind)).value,
        subject=services.check_text(data.get("subject", saved.subject), "subject", 300),
        preheader=services.check_text(
            data.get("preheader", saved.preheader), "preheader", 300
        ),
        template=template,
        blocks=services.check_blocks(session, library, blocks),
        custom_mjml=services.check_text(
            data.get("custom_mjml", saved.custom_mjml), "custom_mjml", services.MAX_MJML
        )
        or None,
    )


# ----------------------------------------------------------------- sources


def template_source(
    session: Session, library: Library, ref: str, kind: str, language: str
) -> str:
    """The MJML source of a template reference (the kind's built-in if it is gone)."""
    scheme, _sep, value = ref.partition(":")
    if scheme == "template":
        template = get_by_id(session, Template, value)
        if template is not None and services.can_use_template(library, template):
            return template.source
    if scheme == "builtin":
        builtin = services.builtin_by_key(value)
        if builtin is not None:
            return builtin.source
    from campaigns.models import CampaignKind

    fallback = services.builtin_by_key(
        services.default_template_key(CampaignKind(kind), language)
    )
    return fallback.source


# ----------------------------------------------------------------- rendering


def brand_of(library: Library) -> Any:
    """The library's branding as the renderer wants it."""
    from campaigns.rendering import Brand

    return Brand(
        library_name=library.name,
        logo_url=library.logo_url,
        primary_color=library.primary_color,
        accent_color=library.accent_color,
    )


def event_info(event: Event) -> Any:
    """An event as the renderer shows it (times in the library's zone)."""
    from campaigns.rendering import EventInfo, LinkInfo

    return EventInfo(
        title=event.title,
        description=event.description,
        starts_at=event.starts_at,
        ends_at=event.ends_at,
        timezone=services.library_zone(event.library),
        venue=event.venue,
        image_url=event.image_url,
        ticket_url=event.ticket_url,
        materials=[
            LinkInfo(label=m["label"], url=m["url"], tag=m.get("tag"))
            for m in event.materials
        ],
    )


def content_of(
    session: Session, library: Library, draft: Draft
) -> tuple[Any, list[str]]:
    """The renderer's Content, and warnings (an event card whose event is gone)."""
    from campaigns.rendering import Content

    wanted = {b["event_id"] for b in draft.blocks if b.get("type") == "event"}
    events = {
        e.id: event_info(e)
        for e in session.scalars(
            select(Event).where(Event.library_id == library.id, Event.id.in_(wanted))
        )
    }
    warnings = []
    blocks = []
    for number, block in enumerate(draft.blocks, start=1):
        if block.get("type") == "event" and block["event_id"] not in events:
            warnings.append(
                _("Block %(number)d is left out: its event was deleted.", number=number)
            )
        elif _unfinished(block):
            warnings.append(
                _("Block %(number)d is left out until it is filled in.", number=number)
            )
        elif block.get("type") == "links":
            links = [link for link in block["links"] if link["label"] and link["url"]]
            blocks.append({**block, "links": links})
        else:
            blocks.append(block)
    content = Content(
        kind=draft.kind,
        subject=draft.subject,
        preheader=draft.preheader,
        blocks=blocks,
        events=events,
    )
    return content, warnings


def _unfinished(block: dict) -> bool:
    """A block the editor has added but not filled in yet (drafts may have them)."""
    kind = block.get("type")
    if kind == "text":
        return not block.get("text")
    if kind == "image":
        return not block.get("url")
    if kind == "button":
        return not (block.get("label") and block.get("url"))
    if kind == "links":
        return not any(link["label"] and link["url"] for link in block["links"])
    return False


class _CompileCache:
    """The most recently compiled newsletters, keyed by everything that shapes them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compile(self, source, content, brand, club) -> Any:
        from campaigns.rendering import compile_newsletter

        key = _cache_key(source, content, brand, club)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        compiled = compile_newsletter(source, content, brand, club)
        with self._lock:
            self._items[key] = compiled
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _cache_key(source, content, brand, club) -> str:
    digest = hashlib.sha256(source.encode())
    shape = [asdict(content), asdict(brand), asdict(club)]
    digest.update(json.dumps(shape, sort_keys=True, default=str).encode())
    return digest.hexdigest()


compile_cache = _CompileCache(CACHE_SIZE)


def compile_draft(
    session: Session, campaign: Campaign, draft: Draft
) -> tuple[Any, list[str]]:
    """The compiled newsletter of a draft and its warnings; raises RenderError."""
    from campaigns.rendering import ClubInfo

    library, club = campaign.library, campaign.club
    content, warnings = content_of(session, library, draft)
    source = draft.custom_mjml or template_source(
        session, library, draft.template, draft.kind, club.language
    )
    compiled = compile_cache.get_or_compile(
        source, content, brand_of(library), ClubInfo(club.name, club.language)
    )
    return compiled, [*warnings, *compiled.warnings]


# ----------------------------------------------------------------- recipients


def web_url(campaign: Campaign) -> str:
    """The public, non-guessable "view in browser" address of a campaign."""
    return external_url("campaigns_public.web_version", token=sign("web", campaign.id))


def member_recipient(campaign: Campaign, subscriber: Subscriber) -> Any:
    """A real member: their name and their own unsubscribe and preferences links."""
    from campaigns.rendering import Recipient

    return Recipient(
        first_name=subscriber.first_name,
        email=subscriber.email,
        unsubscribe_url=external_url(
            "public.unsubscribe",
            token=sign("unsubscribe", subscriber.id, campaign.club_id),
        ),
        preferences_url=external_url(
            "public.preferences", token=sign("manage", subscriber.id)
        ),
        web_url=web_url(campaign),
    )


def neutral_recipient(campaign: Campaign) -> Any:
    """No one in particular: for the web version and archive (no personal data)."""
    from campaigns.rendering import Recipient

    club = campaign.club
    signup = external_url(
        "public.subscribe", library_slug=club.library.slug, club_slug=club.slug
    )
    return Recipient(
        first_name="",
        email="",
        unsubscribe_url=signup,
        preferences_url=signup,
        web_url=web_url(campaign),
    )


def sample_recipient(campaign: Campaign) -> Any:
    """The made-up reader of a preview, with a working web-version link."""
    from campaigns.rendering import sample_recipient as sample

    recipient = sample(campaign.club.language)
    recipient.web_url = web_url(campaign)
    return recipient


def club_member(session: Session, campaign: Campaign, subscriber_id: Any) -> Subscriber:
    """A subscriber of the campaign's club, for personalising a preview."""
    subscriber = None
    subscriber_id = as_id(subscriber_id)
    if subscriber_id is not None:
        subscriber = session.scalar(
            select(Subscriber)
            .join(Membership)
            .where(
                Subscriber.id == subscriber_id, Membership.club_id == campaign.club_id
            )
        )
    if subscriber is None:
        raise CampaignError(_("Choose a member of this club."), "subscriber_id")
    return subscriber


def preview_members(session: Session, club: Club, limit: int = 100) -> list[Subscriber]:
    """Members to choose from when personalising the preview."""
    return session.scalars(
        select(Subscriber)
        .join(Membership)
        .where(Membership.club_id == club.id)
        .order_by(Subscriber.first_name, Subscriber.id)
        .limit(limit)
    ).all()


def preview(
    session: Session, campaign: Campaign, draft: Draft, subscriber_id: Any = None
) -> dict[str, Any]:
    """HTML, text and warnings of a draft personalised for a sample or a member."""
    recipient = (
        member_recipient(campaign, club_member(session, campaign, subscriber_id))
        if subscriber_id not in (None, "")
        else sample_recipient(campaign)
    )
    compiled, warnings = compile_draft(session, campaign, draft)
    html, text = compiled.personalize(recipient)
    return {
        "html": html,
        "text": text,
        "warnings": warnings,
        "html_size": compiled.html_size,
        "subject": draft.subject,
    }


def web_version(session: Session, campaign: Campaign) -> str:
    """The campaign's HTML with neutral personalisation."""
    compiled, _warnings = compile_draft(session, campaign, draft_of(campaign))
    html, _text = compiled.personalize(neutral_recipient(campaign))
    return html


# ----------------------------------------------------------------- test send


def parse_addresses(value: Any) -> list[str]:
    """Up to five checked, distinct e-mail addresses (a list or a comma list)."""
    if isinstance(value, str):
        value = [a for a in value.replace(";", ",").replace("\n", ",").split(",")]
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise CampaignError(_("Give the addresses as a list."), "addresses")
    addresses: list[str] = []
    for raw in (a.strip() for a in value):
        if not raw:
            continue
        try:
            address = validate_email(raw, check_deliverability=False).normalized
        except EmailNotValidError:
            raise CampaignError(
                _("“%(address)s” is not an e-mail address.", address=raw[:100]),
                "addresses",
            ) from None
        if address.lower() not in (a.lower() for a in addresses):
            addresses.append(address)
    if not addresses:
        raise CampaignError(_("Give at least one address."), "addresses")
    if len(addresses) > MAX_TEST_ADDRESSES:
        raise CampaignError(
            _("Send a test to at most %(limit)d addresses.", limit=MAX_TEST_ADDRESSES),
            "addresses",
        )
    return addresses


def _test_recipient(
    session: Session, campaign: Campaign, address: str, personal
) -> Any:
    """Whose links a test mail carries.

    If the address belongs to one of the library's subscribers, their own links
    (it is their mailbox). Otherwise the links lead to the real pages with tokens
    that name no one: pressing "unsubscribe" in a test mail, or a mail client's
    one-click unsubscribe, must never take a real member off the list.
    """
    from campaigns.rendering import Recipient

    owner = session.scalar(
        select(Subscriber).where(
            Subscriber.library_id == campaign.library_id,
            Subscriber.email_key == address.lower(),
        )
    )
    if owner is not None:
        recipient = member_recipient(campaign, owner)
    else:
        recipient = Recipient(
            first_name="",
            email=address,
            unsubscribe_url=external_url(
                "public.unsubscribe", token=sign("unsubscribe", 0, campaign.club_id)
            ),
            preferences_url=external_url("public.preferences", token=sign("manage", 0)),
            web_url=web_url(campaign),
        )
    recipient.first_name = personal.first_name
    return recipient


def send_test(
    session: Session, campaign: Campaign, addresses: Any, subscriber_id: Any = None
) -> list[QueuedMail]:
    """Send the saved draft, marked as a test, to a few addresses; tries at once.

    The mails go through the mail queue (a row each, retried by the scheduler if
    the server is away) and the configured transport.
    """
    addresses = parse_addresses(addresses)
    personal = (
        club_member(session, campaign, subscriber_id)
        if subscriber_id not in (None, "")
        else sample_recipient(campaign)
    )
    compiled, _warnings = compile_draft(session, campaign, draft_of(campaign))
    mails = []
    for address in addresses:
        recipient = _test_recipient(session, campaign, address, personal)
        html, text = compiled.personalize(recipient)
        msg = _test_message(campaign, address, recipient.unsubscribe_url)
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        mails.append(queue_mail(session, msg, campaign.library_id))
    session.commit()
    for mail in mails:
        deliver_one(session, mail)
        session.commit()
    return mails


def _test_message(campaign: Campaign, address: str, unsubscribe_url: str):
    club, library = campaign.club, campaign.library
    subject = f"{TEST_PREFIX} {campaign.subject or _('(no subject)')}"
    msg = new_message(
        sender=str(Address(club.from_name, addr_spec=club.from_email)),
        to=address,
        subject=subject,
        domain=library.domain,
    )
    if club.reply_to:
        msg["Reply-To"] = club.reply_to
    msg["List-Id"] = f"{club.name} <{club.slug}.{library.domain}>"
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return msg
