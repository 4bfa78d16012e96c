"""The mails a subscriber gets about their membership (confirmation)."""

from __future__ import annotations

from email.headerregistry import Address

from flask import render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from klubpost.links import external_url
from klubpost.mail import QueuedMail, deliver_one, new_message, queue_mail
from klubpost.security import sign
from subscribers.models import Membership


def confirmation_url(membership: Membership) -> str:
    """The signed link that confirms a pending membership."""
    return external_url("public.confirm", token=sign("confirm", membership.id))


def preferences_url(subscriber_id: int) -> str:
    """The signed link to a subscriber's preferences page."""
    return external_url("public.preferences", token=sign("manage", subscriber_id))


def send_confirmation(session: Session, membership: Membership) -> QueuedMail:
    """Queue the double opt-in mail, in the club's language, and try it at once."""
    mail = queue_confirmation(session, membership)
    session.commit()
    # One immediate try; on failure the scheduler retries with back-off.
    deliver_one(session, mail)
    session.commit()
    return mail


def queue_confirmation(session: Session, membership: Membership) -> QueuedMail:
    """Queue the double opt-in mail for the scheduler to send; does not commit."""
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
        sender=str(Address(club.from_name, addr_spec=club.from_email)),
        to=subscriber.email,
        subject=subject,
        domain=club.library.domain,
    )
    if club.reply_to:
        msg["Reply-To"] = club.reply_to
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return queue_mail(session, msg, club.library_id)
