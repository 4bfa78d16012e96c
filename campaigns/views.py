"""Staff pages: events, templates, campaigns and the newsletter editor."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from accounts.models import Role
from campaigns import services
from campaigns.forms import EventForm
from campaigns.models import Event
from klubpost.auth import current_library, get_owned, role_required
from klubpost.db import db
from subscribers.models import Club

bp = Blueprint("campaigns", __name__)


def _form_error(form, exc: services.CampaignError) -> None:
    field = getattr(form, exc.field or "", None)
    if field is None:
        flash(exc.message, "error")
    else:
        field.errors = [*field.errors, exc.message]


# ----------------------------------------------------------------- events


@bp.app_template_filter("local_time")
def local_time(value, timezone: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC datetime shown in a library's time zone."""
    local = services.utc_to_local(value, timezone)
    return local.strftime(fmt) if local else ""


@bp.get("/events")
@role_required(Role.STAFF)
def events():
    """The library's events, soonest first."""
    library = current_library()
    rows = services.library_events(db.session, library)
    return render_template(
        "campaigns/events.html",
        events=rows,
        zone=services.library_zone(library),
    )


@bp.get("/events/<int:event_id>")
@role_required(Role.STAFF)
def event(event_id: int):
    """One event with its clubs and materials."""
    row = get_owned(Event, event_id)
    return render_template(
        "campaigns/event.html",
        event=row,
        zone=services.library_zone(row.library),
    )


def _event_form(library, event: Event | None) -> EventForm:
    form = EventForm(obj=event)
    form.club_ids.choices = [
        (c.id, c.name)
        for c in db.session.scalars(
            select(Club).where(Club.library_id == library.id).order_by(Club.name)
        )
    ]
    if request.method == "GET" and event is not None:
        zone = services.library_zone(library)
        form.starts_at.data = local_time(event.starts_at, zone, "%Y-%m-%dT%H:%M")
        form.ends_at.data = local_time(event.ends_at, zone, "%Y-%m-%dT%H:%M")
        form.club_ids.data = [c.id for c in event.clubs]
        form.materials.data = services.material_lines(event.materials)
    return form


def _event_data(form: EventForm) -> dict:
    return {
        "title": form.title.data,
        "description": form.description.data,
        "starts_at": form.starts_at.data,
        "ends_at": form.ends_at.data,
        "venue": form.venue.data,
        "image_url": form.image_url.data,
        "ticket_url": form.ticket_url.data,
        "club_ids": list(form.club_ids.data or []),
        "materials": services.parse_material_lines(form.materials.data),
    }


@bp.route("/events/new", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def new_event():
    """Record an event."""
    library = current_library()
    form = _event_form(library, None)
    if form.validate_on_submit():
        try:
            row = services.create_event(db.session, library, _event_data(form))
        except services.CampaignError as exc:
            db.session.rollback()
            _form_error(form, exc)
        else:
            db.session.commit()
            flash(_("Event saved."), "success")
            return redirect(url_for("campaigns.event", event_id=row.id))
    return render_template(
        "campaigns/event_form.html",
        form=form,
        event=None,
        zone=services.library_zone(library),
    ), (400 if form.errors else 200)


@bp.route("/events/<int:event_id>/edit", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def edit_event(event_id: int):
    """Change an event, or add its materials after it took place."""
    row = get_owned(Event, event_id)
    library = row.library
    form = _event_form(library, row)
    if form.validate_on_submit():
        try:
            services.apply_event(db.session, row, library, _event_data(form))
        except services.CampaignError as exc:
            db.session.rollback()
            row = get_owned(Event, event_id)
            _form_error(form, exc)
        else:
            db.session.commit()
            flash(_("Event saved."), "success")
            return redirect(url_for("campaigns.event", event_id=row.id))
    return render_template(
        "campaigns/event_form.html",
        form=form,
        event=row,
        zone=services.library_zone(library),
    ), (400 if form.errors else 200)


@bp.post("/events/<int:event_id>/delete")
@role_required(Role.EDITOR)
def delete_event(event_id: int):
    """Delete an event (campaigns that showed it keep their other content)."""
    row = get_owned(Event, event_id)
    db.session.delete(row)
    db.session.commit()
    flash(_("Event deleted."), "success")
    return redirect(url_for("campaigns.events"))
