"""Clubs, subscribers and memberships: the rules, as plain functions over a session.

Functions here raise `SubscriberError` (with the offending field) and never HTTP
errors; the views and the API turn those into pages and JSON.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from accounts.models import Library
from campaigns.models import BounceEvent
from klubpost.db import utcnow
from klubpost.mail import OutboxMessage, QueuedMail
from subscribers.mails import ascii_address
from subscribers.models import (
    LANGUAGES,
    MEMBERSHIP_TRANSITIONS,
    WITHDRAWN,
    Club,
    ConsentText,
    ImportIssue,
    ImportJob,
    Membership,
    MembershipStatus,
    Subscriber,
    Suppression,
)
from tracking.models import TrackingMode

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_NAME = 200
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_LENGTH = 500

DEFAULT_CONSENT = {
    "da": (
        "Ja tak, send mig nyhedsbreve fra {club}. Jeg kan altid afmelde mig igen.",
        "Biblioteket må se, hvilke links jeg klikker på, så nyhedsbrevene passer "
        "bedre til mig.",
    ),
    "nl": (
        "Ja, stuur mij nieuwsbrieven van {club}. Ik kan mij altijd weer afmelden.",
        "De bibliotheek mag zien op welke links ik klik, zodat de nieuwsbrieven "
        "beter bij mij passen.",
    ),
    "en": (
        "Yes, send me newsletters from {club}. I can unsubscribe at any time.",
        "The library may see which links I click, so its newsletters suit me better.",
    ),
}


class SubscriberError(Exception):
    """A request that breaks a rule; `field` names the bad input, `code` the rule."""

    code = "invalid"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidAddress(SubscriberError):
    code = "invalid_email"


class AlreadyExists(SubscriberError):
    code = "already_exists"


class Suppressed(SubscriberError):
    code = "suppressed"


class InvalidTransition(SubscriberError):
    code = "invalid_transition"


# ---------------------------------------------------------------- addresses


def normalize_email(raw: str) -> tuple[str, str]:
    """Validate an address; return it normalised and its lower-case key."""
    raw = (raw or "").strip()
    if not raw:
        raise InvalidAddress(_("An e-mail address is required."), "email")
    if len(raw) > 320:
        raise InvalidAddress(_("The e-mail address is too long."), "email")
    try:
        # Our mail goes out without SMTPUTF8, so the part before the @ must be
        # ASCII; international domains are fine (mails use their ASCII form).
        valid = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(
            _("Not a valid e-mail address: %(reason)s", reason=str(exc)), "email"
        ) from exc
    return valid.normalized, valid.normalized.lower()


def email_hash(library_id: int, email_key: str) -> str:
    """The hash kept after erasure (per library, so libraries' lists stay apart)."""
    return hashlib.sha256(f"{library_id}:{email_key}".encode()).hexdigest()


def is_suppressed(session: Session, library_id: int, email_key: str) -> bool:
    """Whether this address was erased from the library and must not come back."""
    return (
        session.scalar(
            select(Suppression.id).where(
                Suppression.library_id == library_id,
                Suppression.email_hash == email_hash(library_id, email_key),
            )
        )
        is not None
    )


def truncate_ip(ip: str | None) -> str | None:
    """An IP address with its host part zeroed (IPv4 /24, IPv6 /48), or None."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(
        ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address
    )


# ---------------------------------------------------------------- clubs


def clean_club_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Check a club's fields; raise SubscriberError naming the first bad one."""
    out = dict(fields)
    for name in ("name", "from_name"):
        if name in out:
            out[name] = _text(out[name], name, required=True)
    if "description" in out:
        out["description"] = _text(out["description"] or "", "description", limit=5000)
    if "slug" in out:
        slug = str(out["slug"] or "").strip().lower()
        if not SLUG_RE.match(slug):
            raise SubscriberError(
                _("Use 1-64 lower-case letters, digits and hyphens for the slug."),
                "slug",
            )
        out["slug"] = slug
    if "language" in out and out["language"] not in LANGUAGES:
        raise SubscriberError(_("Language must be one of da, nl, en."), "language")
    for name in ("from_email", "reply_to"):
        if out.get(name):
            try:
                out[name] = normalize_email(out[name])[0]
            except InvalidAddress as exc:
                raise SubscriberError(exc.message, name) from exc
        elif name in out:
            if name == "from_email":
                raise SubscriberError(_("A sender address is required."), name)
            out[name] = None
    for name in ("double_opt_in", "tracking_consent_required", "public_archive"):
        if name in out and not isinstance(out[name], bool):
            raise SubscriberError(_("Must be true or false."), name)
    if "tracking_mode" in out:
        try:
            out["tracking_mode"] = TrackingMode(out["tracking_mode"])
        except ValueError:
            raise SubscriberError(
                _("Tracking must be one of off, anonymous, individual."),
                "tracking_mode",
            ) from None
    return out


def tracks_people_without_consent(club: Club) -> bool:
    """Whether the club counts opens and clicks per member without asking them.

    The club's choice to make, but public bodies can't rest tracking on
    legitimate interest (EDPB; see docs), so the club's pages say so plainly.
    """
    return (
        club.tracking_mode is TrackingMode.INDIVIDUAL
        and not club.tracking_consent_required
    )


def create_club(session: Session, library: Library, **fields: Any) -> Club:
    """Add a club to a library, with its first consent text."""
    fields = clean_club_fields(fields)
    _check_slug_free(session, library.id, fields["slug"])
    club = Club(library_id=library.id, **fields)
    session.add(club)
    session.flush()
    consent, tracking = DEFAULT_CONSENT[club.language]
    set_consent_text(session, club, consent.format(club=club.name), tracking)
    return club


def update_club(session: Session, club: Club, **fields: Any) -> Club:
    """Change a club's settings."""
    fields = clean_club_fields(fields)
    if "slug" in fields and fields["slug"] != club.slug:
        _check_slug_free(session, club.library_id, fields["slug"])
    for name, value in fields.items():
        setattr(club, name, value)
    session.flush()
    return club


def delete_club(session: Session, club: Club) -> None:
    """Delete a club; the database cascades to its memberships and consent texts.

    One DELETE statement, so the foreign keys between memberships and consent
    texts are checked only once everything of the club is gone.
    """
    session.execute(delete(Club).where(Club.id == club.id))
    session.expunge(club)


def _check_slug_free(session: Session, library_id: int, slug: str) -> None:
    taken = session.scalar(
        select(Club.id).where(Club.library_id == library_id, Club.slug == slug)
    )
    if taken:
        raise AlreadyExists(_("Another club of this library has this slug."), "slug")


def current_consent_text(club: Club) -> ConsentText:
    """The consent wording the club's form shows now (its newest version)."""
    return club.consent_texts[-1]


def set_consent_text(
    session: Session, club: Club, text: str, tracking_text: str
) -> ConsentText:
    """Add a new version of the consent wording, if it differs from the current one."""
    text = _text(text, "consent_text", required=True, limit=2000)
    tracking_text = _text(tracking_text, "tracking_text", required=True, limit=2000)
    if club.consent_texts:
        current = current_consent_text(club)
        if (current.text, current.tracking_text) == (text, tracking_text):
            return current
    version = len(club.consent_texts) + 1
    consent = ConsentText(
        club=club, version=version, text=text, tracking_text=tracking_text
    )
    session.add(consent)
    session.flush()
    return consent


# ---------------------------------------------------------------- subscribers


def clean_subscriber_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Check a subscriber's name, language and attributes."""
    out: dict[str, Any] = {}
    for name in ("first_name", "last_name"):
        if name in fields:
            out[name] = _text(fields[name] or "", name)
    if "language" in fields:
        if fields["language"] not in LANGUAGES:
            raise SubscriberError(_("Language must be one of da, nl, en."), "language")
        out["language"] = fields["language"]
    if "attributes" in fields:
        out["attributes"] = clean_attributes(fields["attributes"])
    return out


def clean_attributes(attributes: Any) -> dict[str, str]:
    """Free attributes: a flat mapping of short names to short texts."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise SubscriberError(
            _("Attributes must be an object of names and values."), "attributes"
        )
    if len(attributes) > MAX_ATTRIBUTES:
        raise SubscriberError(
            _("At most %(count)d attributes.", count=MAX_ATTRIBUTES), "attributes"
        )
    clean = {}
    for key, value in attributes.items():
        key = str(key).strip()
        if not key or len(key) > 64:
            raise SubscriberError(
                _("Attribute names need 1-64 characters."), "attributes"
            )
        if isinstance(value, (dict, list)):
            raise SubscriberError(
                _("Attribute %(name)s must be a plain value.", name=key), "attributes"
            )
        value = "" if value is None else str(value)
        if len(value) > MAX_ATTRIBUTE_LENGTH:
            raise SubscriberError(
                _("Attribute %(name)s is too long.", name=key), "attributes"
            )
        clean[key] = value
    return clean


def find_subscriber(
    session: Session, library_id: int, email_key: str
) -> Subscriber | None:
    """The library's subscriber with this address (any case), if any."""
    return session.scalar(
        select(Subscriber).where(
            Subscriber.library_id == library_id, Subscriber.email_key == email_key
        )
    )


def create_subscriber(
    session: Session,
    library: Library,
    email: str,
    *,
    resubscribe: bool = False,
    **fields: Any,
) -> Subscriber:
    """Add a person to a library; refuses duplicates and erased addresses.

    `resubscribe` is for the person signing up again themselves (public form):
    that is fresh consent, so an earlier erasure does not stand in the way.
    """
    address, key = normalize_email(email)
    if not resubscribe and is_suppressed(session, library.id, key):
        raise Suppressed(
            _(
                "This address was erased at the person's request "
                "and cannot be added again."
            ),
            "email",
        )
    if find_subscriber(session, library.id, key):
        raise AlreadyExists(
            _("A subscriber with this e-mail address already exists."), "email"
        )
    fields = clean_subscriber_fields(fields)
    fields.setdefault(
        "language", library.language if library.language in LANGUAGES else "da"
    )
    subscriber = Subscriber(
        library_id=library.id, email=address, email_key=key, **fields
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def update_subscriber(
    session: Session, subscriber: Subscriber, **fields: Any
) -> Subscriber:
    """Change a subscriber's address, name, language or attributes."""
    if "email" in fields:
        address, key = normalize_email(fields.pop("email"))
        if key != subscriber.email_key:
            if is_suppressed(session, subscriber.library_id, key):
                raise Suppressed(
                    _("This address was erased and cannot be used."), "email"
                )
            if find_subscriber(session, subscriber.library_id, key):
                raise AlreadyExists(
                    _("Another subscriber has this e-mail address."), "email"
                )
        subscriber.email, subscriber.email_key = address, key
    for name, value in clean_subscriber_fields(fields).items():
        setattr(subscriber, name, value)
    session.flush()
    return subscriber


def search_members(
    session: Session, club: Club, query: str = "", status: str | None = None
):
    """A select() of a club's memberships, newest first, filtered by a search text."""
    stmt = (
        select(Membership)
        .join(Subscriber)
        .where(Membership.club_id == club.id)
        .order_by(Membership.id.desc())
    )
    if status in {s.value for s in MembershipStatus}:
        stmt = stmt.where(Membership.status == status)
    query = (query or "").replace("\x00", "").strip()[:200]  # PostgreSQL: no NUL
    if query:
        like = f"%{_escape_like(query.lower())}%"
        stmt = stmt.where(
            or_(
                Subscriber.email_key.like(like, escape="\\"),
                func.lower(Subscriber.first_name).like(like, escape="\\"),
                func.lower(Subscriber.last_name).like(like, escape="\\"),
            )
        )
    return stmt


def search_subscribers(library_ids: Iterable[int], query: str = ""):
    """A select() of the libraries' subscribers whose address or name matches."""
    stmt = select(Subscriber).where(Subscriber.library_id.in_(list(library_ids)))
    query = (query or "").replace("\x00", "").strip()[:200]  # PostgreSQL: no NUL
    if query:
        like = f"%{_escape_like(query.lower())}%"
        stmt = stmt.where(
            or_(
                Subscriber.email_key.like(like, escape="\\"),
                func.lower(Subscriber.first_name).like(like, escape="\\"),
                func.lower(Subscriber.last_name).like(like, escape="\\"),
            )
        )
    return stmt


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# ---------------------------------------------------------------- memberships


def join_club(
    session: Session,
    club: Club,
    subscriber: Subscriber,
    *,
    source: str,
    tracking_consent: bool = False,
    consent_given: bool = False,
    own_sign_up: bool = False,
    ip: str | None = None,
) -> Membership:
    """Make (or renew) a subscriber's membership of a club, recording consent.

    With `consent_given` (an editor or import vouching for consent given elsewhere)
    the membership is confirmed at once; otherwise it waits, unconfirmed, for the
    person to click the link in a confirmation mail. A club without double opt-in
    skips that mail only for the person's `own_sign_up` on its form: someone
    else typing an address in proves nothing about its owner's wish. Unless it
    is the person's own, the consent source says which of the two happened.
    """
    now = utcnow()
    membership = session.scalar(
        select(Membership).where(
            Membership.subscriber_id == subscriber.id, Membership.club_id == club.id
        )
    )
    if membership is not None and membership.status == MembershipStatus.CONFIRMED:
        raise AlreadyExists(_("Already a confirmed member of this club."), "email")
    # An erased address comes back only through a confirmed sign-up: otherwise
    # anyone could lift someone's erasure by typing their address in.
    confirmed = consent_given or (
        own_sign_up
        and not club.double_opt_in
        and not is_suppressed(session, club.library_id, subscriber.email_key)
    )
    if not own_sign_up:
        if membership is not None and needs_own_confirmation(membership):
            if consent_given:
                raise InvalidTransition(str(_REINVITE_ONLY), "status")
            # As `reinvite`: tracking consent, too, must come from the person.
            source, tracking_consent = f"{source}:{REINVITED}", False
        else:
            source = added_by_source(source, consent_given)
    if membership is None:
        membership = Membership(subscriber=subscriber, club=club)
        session.add(membership)
    # A renewal is a new consent record as a whole, whatever the old status.
    target = MembershipStatus.CONFIRMED if confirmed else MembershipStatus.UNCONFIRMED
    membership.status = target
    membership.consent_source = source
    membership.consent_text = current_consent_text(club)
    membership.tracking_consent = tracking_consent
    membership.submitted_at = now
    membership.confirmed_at = now if confirmed else None
    membership.unsubscribed_at = None
    membership.ip_truncated = truncate_ip(ip) if club.library.record_ip else None
    session.flush()
    return membership


# The consent source's ending for a member who had left and was invited again
# by someone else: only their own confirmation can make them a member again.
REINVITED = "re-invited"

_REINVITE_ONLY = _l(
    "This person left the club (or their address bounced): only they can "
    "confirm again. Set them back to unconfirmed to send a new confirmation mail."
)
_TRACKING_IS_THEIRS = _l(
    "Only the person can agree to tracking, on their preferences page or when "
    "signing up. You can switch it off for them."
)


def needs_own_confirmation(membership: Membership) -> bool:
    """Whether only the person may confirm this membership, not staff vouching.

    True for a membership they left or whose address bounced, and for one that
    was re-invited after that and waits for their confirmation.
    """
    return membership.status in WITHDRAWN or (
        membership.status == MembershipStatus.UNCONFIRMED
        and membership.consent_source.endswith(f":{REINVITED}")
    )


def reinvite(session: Session, membership: Membership, *, by: str) -> None:
    """Start a new consent record for a withdrawn membership: pending, new mail.

    The old record (confirmation, unsubscription, tracking consent) is replaced:
    it was withdrawn, and only the person's confirmation of the new mail counts.
    """
    now = utcnow()
    membership.status = MembershipStatus.UNCONFIRMED
    membership.consent_source = f"{by}:{REINVITED}"
    membership.consent_text = current_consent_text(membership.club)
    membership.tracking_consent = False
    membership.submitted_at = now
    membership.confirmed_at = None
    membership.unsubscribed_at = None
    membership.ip_truncated = None
    session.flush()


def staff_update_membership(
    session: Session,
    membership: Membership,
    *,
    by: str,
    status: MembershipStatus | None = None,
    tracking_consent: bool | None = None,
) -> bool:
    """A change made by staff or the API; True when a confirmation mail is due.

    Staff may re-invite a member who left (a new confirmation mail) but never
    confirm them themselves. They may confirm a pending member for consent given
    elsewhere, which the consent source then says. Tracking consent they may
    only switch off: switching it on would claim an agreement nobody can show
    (the person gives it with the club's tracking wording, on the form or their
    preferences page).
    """
    if tracking_consent and not membership.tracking_consent:
        raise SubscriberError(str(_TRACKING_IS_THEIRS), "tracking_consent")
    invite = False
    if status is not None and MembershipStatus(status) != membership.status:
        status = MembershipStatus(status)
        if status == MembershipStatus.CONFIRMED and needs_own_confirmation(membership):
            raise InvalidTransition(str(_REINVITE_ONLY), "status")
        if status == MembershipStatus.UNCONFIRMED and membership.status in WITHDRAWN:
            reinvite(session, membership, by=by)
            invite = True
        else:
            change_status(membership, status)
            if status == MembershipStatus.CONFIRMED:
                membership.consent_source = added_by_source(by, consent_given=True)
    if tracking_consent is not None:
        membership.tracking_consent = tracking_consent
    session.flush()
    return invite


# The public form sends one address at most one confirmation mail per club in
# this time: anyone can type in anyone's address, as often as they like.
CONFIRMATION_INTERVAL = timedelta(minutes=10)


def confirmation_sent_lately(
    session: Session, club: Club, subscriber: Subscriber
) -> bool:
    """Whether a sign-up of this person for this club is waiting for a mail sent
    less than CONFIRMATION_INTERVAL ago (its record is dated when it was sent)."""
    return (
        session.scalar(
            select(Membership.id).where(
                Membership.club_id == club.id,
                Membership.subscriber_id == subscriber.id,
                Membership.status == MembershipStatus.UNCONFIRMED,
                Membership.submitted_at > utcnow() - CONFIRMATION_INTERVAL,
            )
        )
        is not None
    )


def added_by_source(origin: str, consent_given: bool) -> str:
    """The consent source of a member added by someone else (staff, API, import).

    It names who added them and how consent is had: vouched for by that person
    (given elsewhere, e.g. on paper), or still to come from the confirmation mail.
    """
    return f"{origin}:{'consent-given' if consent_given else 'confirm-by-mail'}"


def change_status(membership: Membership, status: MembershipStatus) -> None:
    """Move a membership to `status` if the transition table allows it."""
    status = MembershipStatus(status)
    if status == membership.status:
        return
    if status not in MEMBERSHIP_TRANSITIONS[membership.status]:
        raise InvalidTransition(
            _(
                "A membership cannot go from %(old)s to %(new)s.",
                old=membership.status.value,
                new=status.value,
            ),
            "status",
        )
    now = utcnow()
    membership.status = status
    if status == MembershipStatus.CONFIRMED:
        membership.confirmed_at = now
    elif status == MembershipStatus.UNSUBSCRIBED:
        membership.unsubscribed_at = now


def confirm(membership: Membership) -> bool:
    """Confirm a pending membership from its mail link; False if nothing changed."""
    if membership.status != MembershipStatus.UNCONFIRMED:
        return False
    change_status(membership, MembershipStatus.CONFIRMED)
    return True


def unsubscribe(membership: Membership) -> bool:
    """Unsubscribe; idempotent (False when already out)."""
    if membership.status in (MembershipStatus.UNSUBSCRIBED, MembershipStatus.BOUNCED):
        return False
    change_status(membership, MembershipStatus.UNSUBSCRIBED)
    return True


# ---------------------------------------------------------------- the person's rights


def export_data(subscriber: Subscriber) -> dict[str, Any]:
    """Everything the library holds about a person, for "download my data"."""
    return {
        "email": subscriber.email,
        "first_name": subscriber.first_name,
        "last_name": subscriber.last_name,
        "language": subscriber.language,
        "attributes": subscriber.attributes,
        "library": subscriber.library.name,
        "created_at": subscriber.created_at.isoformat(),
        "memberships": [
            {
                "club": m.club.name,
                "status": m.status.value,
                "tracking_consent": m.tracking_consent,
                "consent": {
                    "source": m.consent_source,
                    "submitted_at": m.submitted_at.isoformat(),
                    "confirmed_at": _iso(m.confirmed_at),
                    "unsubscribed_at": _iso(m.unsubscribed_at),
                    "consent_text_version": m.consent_text.version
                    if m.consent_text
                    else None,
                    "consent_text": m.consent_text.text if m.consent_text else None,
                    "tracking_text": m.consent_text.tracking_text
                    if m.consent_text
                    else None,
                    "ip_truncated": m.ip_truncated,
                },
            }
            for m in subscriber.memberships
        ],
    }


def erase(session: Session, subscriber: Subscriber) -> None:
    """Delete a person's data; keep only a hash so no import can re-add them."""
    digest = email_hash(subscriber.library_id, subscriber.email_key)
    exists = session.scalar(
        select(Suppression.id).where(
            Suppression.library_id == subscriber.library_id,
            Suppression.email_hash == digest,
        )
    )
    if not exists:
        session.add(Suppression(library_id=subscriber.library_id, email_hash=digest))
    _erase_address_traces(session, subscriber)
    session.delete(subscriber)
    session.flush()


def _erase_address_traces(session: Session, subscriber: Subscriber) -> None:
    """Remove the address from the rows that hold it without naming the person.

    Single mails to it (a confirmation carries the first name and a working
    link; one still queued would even go out) and the dev outbox's copies are
    deleted. Import problems and bounce reports keep their row for the
    figures, without the address (bounces that matched a copy of ours go with
    the person already). Bounces no copy matched belong to no library: the
    address is blanked there too.
    """
    library_id = subscriber.library_id
    addresses = sorted({subscriber.email_key, ascii_address(subscriber.email).lower()})
    session.execute(
        delete(QueuedMail).where(
            QueuedMail.library_id == library_id,
            func.lower(QueuedMail.recipient).in_(addresses),
        )
    )
    session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.library_id == library_id,
            func.lower(OutboxMessage.recipients).in_(addresses),
        )
    )
    library_jobs = select(ImportJob.id).join(Club).where(Club.library_id == library_id)
    session.execute(
        update(ImportIssue)
        .where(
            ImportIssue.job_id.in_(library_jobs),
            func.lower(func.trim(ImportIssue.email)).in_(addresses),
        )
        .values(email="")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(BounceEvent)
        .where(
            or_(BounceEvent.library_id == library_id, BounceEvent.library_id.is_(None)),
            func.lower(func.trim(BounceEvent.email)).in_(addresses),
        )
        # The diagnostic usually quotes the address.
        .values(email="", diagnostic="")
        .execution_options(synchronize_session=False)
    )


def lift_suppression(session: Session, subscriber: Subscriber) -> None:
    """Forget an earlier erasure once the person has confirmed a new sign-up."""
    digest = email_hash(subscriber.library_id, subscriber.email_key)
    session.execute(
        delete(Suppression).where(
            Suppression.library_id == subscriber.library_id,
            Suppression.email_hash == digest,
        )
    )


def update_preferences(
    session: Session,
    subscriber: Subscriber,
    *,
    first_name: str,
    last_name: str,
    language: str,
    clubs: set[int],
    tracking: set[int],
    all_clubs: list[Club],
) -> None:
    """Apply the person's own choices from the preferences page.

    The page is reached through a signed link sent to the address, so joining a
    club from it needs no further confirmation.
    """
    update_subscriber(
        session,
        subscriber,
        first_name=first_name,
        last_name=last_name,
        language=language,
    )
    memberships = {m.club_id: m for m in subscriber.memberships}
    for club in all_clubs:
        membership = memberships.get(club.id)
        wanted = club.id in clubs
        active = membership is not None and membership.status in (
            MembershipStatus.CONFIRMED,
            MembershipStatus.UNCONFIRMED,
        )
        if wanted and not active:
            join_club(
                session,
                club,
                subscriber,
                source="preferences",
                tracking_consent=club.id in tracking,
                consent_given=True,
                own_sign_up=True,
            )
        elif not wanted and active:
            unsubscribe(membership)
        elif wanted and membership is not None:
            if membership.status == MembershipStatus.UNCONFIRMED:
                change_status(membership, MembershipStatus.CONFIRMED)
            membership.tracking_consent = club.id in tracking
    if any(m.status == MembershipStatus.CONFIRMED for m in subscriber.memberships):
        # The link came in a mail to the address: as good as confirming it.
        lift_suppression(session, subscriber)
    session.flush()


def suppressed_keys(session: Session, library_id: int, keys: Iterable[str]) -> set[str]:
    """Which of these address keys were erased from the library."""
    by_hash = {email_hash(library_id, key): key for key in keys}
    if not by_hash:
        return set()
    found = session.scalars(
        select(Suppression.email_hash).where(
            Suppression.library_id == library_id,
            Suppression.email_hash.in_(list(by_hash)),
        )
    )
    return {by_hash[h] for h in found}


# ---------------------------------------------------------------- helpers


def _text(
    value: Any, field: str, *, required: bool = False, limit: int = MAX_NAME
) -> str:
    if not isinstance(value, str):
        raise SubscriberError(_("Must be text."), field)
    value = value.strip()
    if required and not value:
        raise SubscriberError(_("This field is required."), field)
    if len(value) > limit:
        raise SubscriberError(_("At most %(count)d characters.", count=limit), field)
    if "\x00" in value:  # PostgreSQL refuses NUL in text
        raise SubscriberError(
            _("Contains a NUL character, which is not allowed."), field
        )
    if any(ch in value for ch in "\r\n") and field not in (
        "description",
        "consent_text",
        "tracking_text",
    ):
        raise SubscriberError(_("Line breaks are not allowed here."), field)
    return value


def _iso(value) -> str | None:
    return value.isoformat() if value else None
