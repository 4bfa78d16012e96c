"""Staff pages: clubs, their members, and single subscribers."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from accounts.models import Role
from campaigns.bounces import latest_bounces
from klubpost.auth import acting_user, current_library, get_owned, role_required
from klubpost.db import MAX_PAGE, db
from subscribers import services
from subscribers.forms import ClubForm, MembershipForm, NewMemberForm, SubscriberForm
from subscribers.mails import send_confirmation
from subscribers.models import (
    MEMBERSHIP_TRANSITIONS,
    Club,
    Membership,
    MembershipStatus,
    Subscriber,
)
from tracking.models import TrackingMode

bp = Blueprint("subscribers", __name__)

STATUS_LABELS = {
    MembershipStatus.UNCONFIRMED: _l("unconfirmed"),
    MembershipStatus.CONFIRMED: _l("confirmed"),
    MembershipStatus.UNSUBSCRIBED: _l("unsubscribed"),
    MembershipStatus.BOUNCED: _l("bounced"),
}


@bp.app_template_global()
def status_label(status: MembershipStatus) -> str:
    """A membership status in the page's language."""
    return str(STATUS_LABELS[MembershipStatus(status)])


CLUB_FIELDS = (
    "name",
    "slug",
    "description",
    "language",
    "from_name",
    "from_email",
    "reply_to",
    "double_opt_in",
    "tracking_consent_required",
    "tracking_mode",
    "public_archive",
)


@bp.get("/clubs")
@role_required(Role.STAFF)
def clubs():
    """The library's clubs with their member counts."""
    library = current_library()
    rows = db.session.scalars(
        select(Club).where(Club.library_id == library.id).order_by(Club.name)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for club_id, status, count in db.session.execute(
        select(Membership.club_id, Membership.status, func.count())
        .join(Club)
        .where(Club.library_id == library.id)
        .group_by(Membership.club_id, Membership.status)
    ):
        counts.setdefault(club_id, {})[status.value] = count
    return render_template("subscribers/clubs.html", clubs=rows, counts=counts)


@bp.route("/clubs/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def new_club():
    """Create a club."""
    library = current_library()
    form = ClubForm()
    if request.method == "GET":
        form.double_opt_in.data = True
        form.tracking_consent_required.data = True
        form.tracking_mode.data = TrackingMode.INDIVIDUAL.value
        form.language.data = library.language
        consent, tracking = services.DEFAULT_CONSENT[library.language]
        form.consent_text.data = consent.format(club="…")
        form.tracking_text.data = tracking
    if form.validate_on_submit():
        try:
            club = services.create_club(
                db.session, library, **{f: getattr(form, f).data for f in CLUB_FIELDS}
            )
            services.set_consent_text(
                db.session, club, form.consent_text.data, form.tracking_text.data
            )
        except services.SubscriberError as exc:
            db.session.rollback()
            _form_error(form, exc)
        else:
            db.session.commit()
            flash(_("Club created."), "success")
            _warn_about_tracking(club)
            return redirect(url_for("subscribers.members", club_id=club.id))
    return render_template("subscribers/club_form.html", form=form, club=None), (
        400 if form.errors else 200
    )


@bp.route("/clubs/<int:club_id>/edit", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def edit_club(club_id: int):
    """Change a club's settings and consent texts."""
    club = get_owned(Club, club_id)
    form = ClubForm(obj=club)
    if request.method == "GET":
        consent = services.current_consent_text(club)
        form.consent_text.data, form.tracking_text.data = (
            consent.text,
            consent.tracking_text,
        )
    if form.validate_on_submit():
        try:
            services.update_club(
                db.session, club, **{f: getattr(form, f).data for f in CLUB_FIELDS}
            )
            services.set_consent_text(
                db.session, club, form.consent_text.data, form.tracking_text.data
            )
        except services.SubscriberError as exc:
            db.session.rollback()
            _form_error(form, exc)
        else:
            db.session.commit()
            flash(_("Club saved."), "success")
            _warn_about_tracking(club)
            return redirect(url_for("subscribers.members", club_id=club.id))
    return render_template("subscribers/club_form.html", form=form, club=club), (
        400 if form.errors else 200
    )


def _warn_about_tracking(club: Club) -> None:
    if services.tracks_people_without_consent(club):
        flash(
            _(
                "Opens and clicks are now counted per member without asking them. "
                "Public libraries need each member's consent for that: tick the "
                "consent rule, or count per link only."
            ),
            "warning",
        )


@bp.post("/clubs/<int:club_id>/delete")
@role_required(Role.ADMIN)
def delete_club(club_id: int):
    """Delete a club with its memberships (the people stay known to the library)."""
    club = get_owned(Club, club_id)
    if request.form.get("confirm_name", "").strip() != club.name:
        flash(_("Type the club's name to confirm that it should be deleted."), "error")
        return redirect(url_for("subscribers.edit_club", club_id=club.id))
    services.delete_club(db.session, club)
    db.session.commit()
    flash(_("Club deleted."), "success")
    return redirect(url_for("subscribers.clubs"))


@bp.get("/clubs/<int:club_id>")
@role_required(Role.STAFF)
def members(club_id: int):
    """A club's members: search, filter by status, page through."""
    club = get_owned(Club, club_id)
    query = request.args.get("q", "")
    status = request.args.get("status", "")
    page = min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)
    pagination = db.paginate(
        services.search_members(db.session, club, query, status),
        page=page,
        per_page=50,
        error_out=False,
    )
    return render_template(
        "subscribers/members.html",
        club=club,
        pagination=pagination,
        query=query,
        status=status,
        statuses=list(MembershipStatus),
    )


@bp.route("/clubs/<int:club_id>/members/new", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def new_member(club_id: int):
    """Add a person to a club; a confirmation mail goes out unless consent is given."""
    club = get_owned(Club, club_id)
    form = NewMemberForm()
    refused = False
    if request.method == "GET":
        form.language.data = club.language
    if form.validate_on_submit():
        try:
            membership = _add_member(club, form)
        except services.SubscriberError as exc:
            db.session.rollback()
            _form_error(form, exc)
            refused = True
        else:
            if membership.status == MembershipStatus.UNCONFIRMED:
                send_confirmation(db.session, membership)
                flash(_("Added. A confirmation mail has been sent."), "success")
            else:
                flash(_("Added as a confirmed member."), "success")
            return redirect(url_for("subscribers.members", club_id=club.id))
    return render_template("subscribers/member_form.html", form=form, club=club), (
        400 if form.errors or refused else 200
    )


def _add_member(club: Club, form: NewMemberForm) -> Membership:
    library = club.library
    address, key = services.normalize_email(form.email.data)
    subscriber = services.find_subscriber(db.session, library.id, key)
    if subscriber is None:
        subscriber = services.create_subscriber(
            db.session,
            library,
            address,
            first_name=form.first_name.data,
            last_name=form.last_name.data,
            language=form.language.data,
            attributes=parse_attributes(form.attributes.data),
        )
    membership = services.join_club(
        db.session,
        club,
        subscriber,
        source=f"staff:{acting_user().id}",
        tracking_consent=form.tracking_consent.data,
        consent_given=form.consent_given.data,
    )
    db.session.commit()
    return membership


@bp.route("/subscribers/<int:subscriber_id>", methods=["GET", "POST"])
@role_required(Role.STAFF)
def subscriber(subscriber_id: int):
    """One subscriber: details, memberships with consent records; editors may edit."""
    person = get_owned(Subscriber, subscriber_id)
    form = SubscriberForm(obj=person)
    if request.method == "GET":
        form.attributes.data = format_attributes(person.attributes)
    elif not acting_user().has_role(Role.EDITOR):
        return render_template(
            "errors/error.html", code=403, message=_("Read only.")
        ), 403
    if form.validate_on_submit():
        try:
            services.update_subscriber(
                db.session,
                person,
                email=form.email.data,
                first_name=form.first_name.data,
                last_name=form.last_name.data,
                language=form.language.data,
                attributes=parse_attributes(form.attributes.data),
            )
        except services.SubscriberError as exc:
            db.session.rollback()
            _form_error(form, exc)
        else:
            db.session.commit()
            flash(_("Subscriber saved."), "success")
            return redirect(url_for("subscribers.subscriber", subscriber_id=person.id))
    return render_template(
        "subscribers/subscriber.html",
        person=person,
        form=form,
        transitions=MEMBERSHIP_TRANSITIONS,
        membership_form=MembershipForm(),
        bounced=latest_bounces(db.session, [m.id for m in person.memberships]),
    ), (400 if form.errors else 200)


@bp.post("/memberships/<int:membership_id>")
@role_required(Role.EDITOR)
def update_membership(membership_id: int):
    """Change a membership's status or tracking consent."""
    membership = get_owned(Membership, membership_id)
    form = MembershipForm()
    form.status.choices = [s.value for s in MembershipStatus]
    if form.validate_on_submit():
        try:
            invite = services.staff_update_membership(
                db.session,
                membership,
                by=f"staff:{acting_user().id}",
                status=MembershipStatus(form.status.data),
                tracking_consent=form.tracking_consent.data,
            )
        except services.SubscriberError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return redirect(
                url_for(
                    "subscribers.subscriber", subscriber_id=membership.subscriber_id
                )
            )
        db.session.commit()
        if invite:
            send_confirmation(db.session, membership)
            flash(_("Invited again: a confirmation mail has been sent."), "success")
        else:
            flash(_("Membership saved."), "success")
    else:
        flash(_("That status is not known."), "error")
    return redirect(
        url_for("subscribers.subscriber", subscriber_id=membership.subscriber_id)
    )


@bp.post("/memberships/<int:membership_id>/remove")
@role_required(Role.EDITOR)
def remove_membership(membership_id: int):
    """Take a person off a club's list (they stay known to the library)."""
    membership = get_owned(Membership, membership_id)
    subscriber_id, club_id = membership.subscriber_id, membership.club_id
    db.session.delete(membership)
    db.session.commit()
    flash(_("Removed from the club."), "success")
    if request.form.get("back") == "club":
        return redirect(url_for("subscribers.members", club_id=club_id))
    return redirect(url_for("subscribers.subscriber", subscriber_id=subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/delete")
@role_required(Role.EDITOR)
def delete_subscriber(subscriber_id: int):
    """Delete a subscriber; erase=1 also keeps a hash so no import re-adds them."""
    person = get_owned(Subscriber, subscriber_id)
    if request.form.get("erase") == "1":
        services.erase(db.session, person)
        flash(_("Erased. The address cannot be imported again."), "success")
    else:
        db.session.delete(person)
        flash(_("Subscriber deleted."), "success")
    db.session.commit()
    return redirect(url_for("subscribers.clubs"))


def parse_attributes(text: str | None) -> dict[str, str]:
    """Read "name = value" lines into a mapping."""
    attributes = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            raise services.SubscriberError(
                _("Write each attribute as name = value."), "attributes"
            )
        name, value = line.split("=", 1)
        attributes[name.strip()] = value.strip()
    return services.clean_attributes(attributes)


def format_attributes(attributes: dict[str, str]) -> str:
    """The inverse of parse_attributes."""
    return "\n".join(f"{k} = {v}" for k, v in (attributes or {}).items())


def _form_error(form, exc: services.SubscriberError) -> None:
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None:
        field.errors = [*field.errors, exc.message]
    else:
        flash(exc.message, "error")
