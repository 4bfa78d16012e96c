"""Public pages, no log-in: sign up, confirm, preferences, my data, erase, unsubscribe.

Links from mails carry signed tokens (klubpost.security) naming only ids; they never
expire and a forged or altered one gets a clear 400 page.
"""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, validate_csrf
from sqlalchemy import select
from wtforms import ValidationError

from accounts.models import Library
from klubpost.db import db
from klubpost.i18n import use_language
from klubpost.security import InvalidToken, csrf, sign, unsign
from subscribers import services
from subscribers.forms import PreferencesForm, SubscribeForm
from subscribers.mails import send_confirmation
from subscribers.models import Club, Membership, MembershipStatus, Subscriber

bp = Blueprint("public", __name__)

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


def unsubscribe_token(subscriber_id: int, club_id: int) -> str:
    """The token of a member's unsubscribe link for one club."""
    return sign("unsubscribe", subscriber_id, club_id)


def _club_or_404(library_slug: str, club_slug: str) -> Club:
    club = db.session.scalar(
        select(Club)
        .join(Library)
        .where(Library.slug == library_slug, Club.slug == club_slug)
    )
    if club is None:
        abort(404, description=_("There is no such club."))
    return club


def _bad_link():
    message = _(
        "This link is not valid. It may have been shortened or changed when it was "
        "copied. Open it again from the mail, or contact the library."
    )
    return render_template("errors/error.html", code=400, message=message), 400


@bp.route("/join/<library_slug>/<club_slug>", methods=["GET", "POST"])
def subscribe(library_slug: str, club_slug: str):
    """A club's sign-up form, in the club's language."""
    club = _club_or_404(library_slug, club_slug)
    use_language(request.values.get("lang") or club.language)
    form = SubscribeForm()
    consent = services.current_consent_text(club)
    if form.validate_on_submit():
        if form.website.data:  # a field people never see: only bots fill it in
            return render_template("public/check_inbox.html", club=club)
        try:
            _sign_up(club, form)
        except services.SubscriberError as exc:
            db.session.rollback()
            getattr(form, exc.field or "email").errors.append(
                _("Please check the e-mail address.")
                if exc.field == "email"
                else exc.message
            )
        else:
            template = (
                "public/check_inbox.html"
                if club.double_opt_in
                else "public/welcome.html"
            )
            return render_template(template, club=club)
    return render_template(
        "public/subscribe.html", club=club, form=form, consent=consent
    ), (400 if form.errors else 200)


def _sign_up(club: Club, form: SubscribeForm) -> None:
    """Record the sign-up; send the confirmation mail where double opt-in applies
    (and for an erased address, whatever the club: only its owner may undo that).

    The answer is the same whether or not the address was known, so the form
    does not reveal who is a member; nor does it say when a repeated sign-up
    sends no mail (at most one per CONFIRMATION_INTERVAL; the page says so).
    """
    library = club.library
    address, key = services.normalize_email(form.email.data)
    subscriber = services.find_subscriber(db.session, library.id, key)
    if subscriber is not None and services.confirmation_sent_lately(
        db.session, club, subscriber
    ):
        return
    if subscriber is None:
        subscriber = services.create_subscriber(
            db.session,
            library,
            address,
            first_name=form.first_name.data or "",
            language=club.language,
            resubscribe=True,
        )
    try:
        membership = services.join_club(
            db.session,
            club,
            subscriber,
            source=f"form:{club.slug}",
            tracking_consent=bool(form.tracking_consent.data),
            own_sign_up=True,
            ip=request.remote_addr,
        )
    except services.AlreadyExists:
        db.session.rollback()
        return
    db.session.commit()
    if membership.status == MembershipStatus.UNCONFIRMED:
        send_confirmation(db.session, membership)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    """The double opt-in link: GET asks, POST confirms.

    Mail security scanners open every link in a message; if a GET confirmed,
    they would confirm sign-ups that nobody made.
    """
    try:
        (membership_id,) = unsign("confirm", token, 1)
    except InvalidToken:
        return _bad_link()
    membership = db.session.get(Membership, membership_id)
    if membership is None:
        abort(
            404, description=_("This sign-up no longer exists. Please sign up again.")
        )
    use_language(membership.subscriber.language or membership.club.language)
    if request.method == "GET" and membership.status == MembershipStatus.UNCONFIRMED:
        return render_template(
            "public/confirm.html", membership=membership, club=membership.club
        )
    changed = services.confirm(membership) if request.method == "POST" else False
    if changed:
        services.lift_suppression(db.session, membership.subscriber)
    db.session.commit()
    return render_template(
        "public/confirmed.html",
        membership=membership,
        club=membership.club,
        already=not changed,
        preferences_token=sign("manage", membership.subscriber_id),
    )


def _subscriber_from(token: str) -> Subscriber | None:
    try:
        (subscriber_id,) = unsign("manage", token, 1)
    except InvalidToken:
        return None
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        abort(404, description=_("We hold no data for this link any more."))
    use_language(subscriber.language)
    return subscriber


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str):
    """A subscriber's own page: name, language, clubs and tracking consent."""
    subscriber = _subscriber_from(token)
    if subscriber is None:
        return _bad_link()
    clubs = db.session.scalars(
        select(Club).where(Club.library_id == subscriber.library_id).order_by(Club.name)
    ).all()
    memberships = {m.club_id: m for m in subscriber.memberships}
    form = PreferencesForm(obj=subscriber)
    if form.validate_on_submit():
        try:
            services.update_preferences(
                db.session,
                subscriber,
                first_name=form.first_name.data,
                last_name=form.last_name.data,
                language=form.language.data,
                clubs={c.id for c in clubs if request.form.get(f"club-{c.id}") == "y"},
                tracking={
                    c.id for c in clubs if request.form.get(f"tracking-{c.id}") == "y"
                },
                all_clubs=clubs,
            )
        except services.SubscriberError as exc:
            db.session.rollback()
            getattr(form, exc.field or "first_name").errors.append(exc.message)
        else:
            db.session.commit()
            use_language(subscriber.language)
            return render_template(
                "public/preferences.html",
                subscriber=subscriber,
                clubs=clubs,
                memberships={m.club_id: m for m in subscriber.memberships},
                form=form,
                token=token,
                saved=True,
            )
    return render_template(
        "public/preferences.html",
        subscriber=subscriber,
        clubs=clubs,
        memberships=memberships,
        form=form,
        token=token,
        saved=False,
    ), (400 if form.errors else 200)


@bp.get("/preferences/<token>/data.json")
def my_data(token: str):
    """Everything held about the person, as a JSON download."""
    subscriber = _subscriber_from(token)
    if subscriber is None:
        return _bad_link()
    response = jsonify(services.export_data(subscriber))
    response.headers["Content-Disposition"] = 'attachment; filename="my-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/preferences/<token>/erase", methods=["GET", "POST"])
def erase(token: str):
    """Erase the person (after a confirming POST); only a hash of the address stays."""
    subscriber = _subscriber_from(token)
    if subscriber is None:
        return _bad_link()
    if request.method == "POST":
        library = subscriber.library
        services.erase(db.session, subscriber)
        db.session.commit()
        return render_template("public/erased.html", library=library)
    return render_template("public/erase.html", subscriber=subscriber, token=token)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
# The one-click POST (RFC 8058) has no cookie; the form's POST is checked below.
@csrf.exempt
def unsubscribe(token: str):
    """GET shows a button and changes nothing (scanners fetch links); POST unsubscribes.

    A POST whose body is `List-Unsubscribe=One-Click` comes from a mail client
    (RFC 8058) and gets a plain 200, no redirect, no cookie needed. Any other POST
    is the page's own form and must carry its CSRF token.
    """
    try:
        subscriber_id, club_id = unsign("unsubscribe", token, 2)
    except InvalidToken:
        return _bad_link()
    membership = db.session.scalar(
        select(Membership).where(
            Membership.subscriber_id == subscriber_id, Membership.club_id == club_id
        )
    )
    one_click = (
        request.method == "POST" and request.form.get("List-Unsubscribe") == "One-Click"
    )
    if membership is None:
        if one_click:
            return "Unsubscribed.\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
        abort(404, description=_("You are not on this list (any more)."))
    use_language(membership.subscriber.language or membership.club.language)
    if request.method == "GET":
        return render_template(
            "public/unsubscribe.html", membership=membership, token=token
        )
    if not one_click:
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as exc:
            raise CSRFError(str(exc)) from exc
    services.unsubscribe(membership)
    db.session.commit()
    if one_click:
        return "Unsubscribed.\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template(
        "public/unsubscribed.html",
        membership=membership,
        preferences_token=sign("manage", membership.subscriber_id),
    )
