"""The mails a subscriber gets about their membership (confirmation)."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage

import idna
from flask import current_app, has_request_context, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from klubpost.links import external_url
from klubpost.mail import QueuedMail, deliver_one, new_message, queue_mail
from klubpost.security import sign
from subscribers.models import ImportJob, Membership, MembershipStatus

# Keys of ImportJob.counts: members of an import still to be sent the
# confirmation mail, and how many mails were queued so far.
CONFIRMATIONS_PENDING = "confirmation_mails_pending"
CONFIRMATIONS_QUEUED = "confirmation_mails_queued"


def confirmation_url(membership: Membership) -> str:
    """The signed link that confirms a pending membership."""
    return external_url("public.confirm", token=sign("confirm", membership.id))


def preferences_url(subscriber_id: int) -> str:
    """The signed link to a subscriber's preferences page."""
    return external_url("public.preferences", token=sign("manage", subscriber_id))


def ascii_address(address: str) -> str:
    """An address with its domain in ASCII (punycode), as mail headers need it."""
    local, _at, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:  # IDNA 2008, as email-validator checked the domain
        return f"{local}@{idna.encode(domain).decode('ascii')}"
    except idna.IDNAError:
        return address


def send_confirmation(session: Session, membership: Membership) -> QueuedMail:
    """Queue the double opt-in mail, in the club's language, and try it at once."""
    mail = queue_confirmation(session, membership)
    session.commit()
    # One immediate try; on failure the scheduler retries with back-off.
    deliver_one(session, mail)
    session.commit()
    return mail


def queue_confirmation(session: Session, membership: Membership) -> QueuedMail:
    """Queue the double opt-in mail for the scheduler to send (flushes only)."""
    if has_request_context():
        msg = confirmation_message(membership)
    else:
        # Imports run in the scheduler, outside any request: links need one.
        base = current_app.config["BASE_URL"]
        with current_app.test_request_context("/", base_url=base):
            msg = confirmation_message(membership)
    return queue_mail(session, msg, membership.club.library_id)


def confirmation_message(membership: Membership) -> EmailMessage:
    """The double opt-in mail, in the subscriber's or the club's language."""
    club = membership.club
    subscriber = membership.subscriber
    language = subscriber.language or club.language
    with force_locale(language):
        subject = _("Please confirm: %(club)s", club=club.name)
        context = {
            "club": club,
            "subscriber": subscriber,
            "confirm_url": confirmation_url(membership),
            "preferences_url": preferences_url(subscriber.id),
        }
        text = render_template("mails/confirm.txt", **context)
        html = render_template("mails/confirm.html", **context)
    msg = new_message(
        sender=str(Address(club.from_name, addr_spec=ascii_address(club.from_email))),
        to=ascii_address(subscriber.email),
        subject=subject,
        domain=club.library.domain,
    )
    if club.reply_to:
        msg["Reply-To"] = club.reply_to
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def queue_import_confirmations(session: Session, limit: int = 500) -> int:
    """Queue confirmation mails for an import's unconfirmed members, one batch.

    Building a mail takes milliseconds, so an import of thousands of people only
    notes how many are pending; the scheduler queues them here in batches. The
    job's cursor is committed together with each batch of mails, so a crash
    neither loses nor repeats a mail. Members who meanwhile confirmed or left are
    skipped. Returns how many mails were queued. Commits.
    """
    job = session.scalar(
        select(ImportJob)
        .where(ImportJob.counts[CONFIRMATIONS_PENDING].as_integer() > 0)
        .order_by(ImportJob.id)
        .limit(1)
    )
    if job is None:
        return 0
    mapping = dict(job.mapping or {})
    batch = session.scalars(
        select(Membership)
        .where(
            Membership.import_job_id == job.id,
            Membership.id > mapping.get("confirmations_after", 0),
        )
        .options(selectinload(Membership.subscriber))
        .order_by(Membership.id)
        .limit(limit)
    ).all()
    queued = 0
    for membership in batch:
        if membership.status == MembershipStatus.UNCONFIRMED:
            queue_confirmation(session, membership)
            queued += 1
    counts = dict(job.counts)
    pending = counts[CONFIRMATIONS_PENDING] - len(batch)
    counts[CONFIRMATIONS_PENDING] = max(pending, 0) if len(batch) == limit else 0
    counts[CONFIRMATIONS_QUEUED] = counts.get(CONFIRMATIONS_QUEUED, 0) + queued
    if batch:
        mapping["confirmations_after"] = batch[-1].id
    job.counts, job.mapping = counts, mapping
    session.commit()
    return queued
