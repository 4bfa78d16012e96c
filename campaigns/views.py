"""Staff pages: events, templates, campaigns and the newsletter editor."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from accounts.models import Role
from campaigns import bounces, compose, sending, services
from campaigns.forms import (
    KIND_CHOICES,
    REPEAT_CHOICES,
    EventForm,
    NewCampaignForm,
    ScheduleForm,
    TemplateForm,
    TestSendForm,
)
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Event,
    Repeat,
    ScheduleMode,
    Template,
)
from klubpost.auth import acting_user, current_library, get_owned, role_required
from klubpost.db import db, get_by_id
from subscribers.models import Club

bp = Blueprint("campaigns", __name__)


def _form_error(form, exc: services.CampaignError) -> None:
    field = getattr(form, exc.field or "", None)
    if field is None:
        flash(exc.message, "error")
    else:
        field.errors = [*field.errors, exc.message]


STATUS_LABELS = {
    CampaignStatus.DRAFT: _l("draft"),
    CampaignStatus.SCHEDULED: _l("scheduled"),
    CampaignStatus.SENDING: _l("sending"),
    CampaignStatus.PAUSED: _l("paused"),
    CampaignStatus.SENT: _l("sent"),
    CampaignStatus.CANCELLED: _l("cancelled"),
}


@bp.app_template_global()
def campaign_status_label(status: CampaignStatus) -> str:
    """A campaign status in the page's language."""
    return str(STATUS_LABELS[CampaignStatus(status)])


@bp.app_template_global()
def repeat_label(repeat: Repeat) -> str:
    """How a campaign repeats, in the page's language."""
    return str(next(c.label for c in REPEAT_CHOICES if c.value == repeat))


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


# ----------------------------------------------------------------- templates


def _template_or_404(template_id: int) -> Template:
    """A stored template the user's library may use, else 404."""
    template = get_by_id(db.session, Template, template_id)
    if template is None or not services.can_use_template(current_library(), template):
        abort(404)
    return template


@bp.get("/templates")
@role_required(Role.STAFF)
def templates():
    """The library's own, its consortium's shared and the built-in templates."""
    library = current_library()
    stored = db.session.scalars(services.usable_templates_query(library)).all()
    return render_template(
        "campaigns/templates.html",
        stored=stored,
        builtin=services.builtin_templates(),
        kinds={c.value: c.label for c in KIND_CHOICES},
    )


@bp.route("/templates/new", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def new_template():
    """A library template (or, for consortium admins, a shared one) from a start."""
    library = current_library()
    user = acting_user()
    form = TemplateForm()
    start = services.builtin_by_key(request.args.get("from"))
    if request.method == "GET" and start is not None:
        form.name.data = start.name
        form.kind.data, form.language.data = start.kind, start.language
        form.source.data = start.source
    if form.validate_on_submit():
        shared = form.shared.data and user.role == Role.CONSORTIUM_ADMIN
        if shared and library.consortium_id is None:
            form.shared.errors.append(_("This library is not in a consortium."))
        else:
            template = Template(
                library_id=None if shared else library.id,
                consortium_id=library.consortium_id if shared else None,
                created_by_id=user.id,
            )
            try:
                services.apply_template(template, _template_data(form))
            except services.CampaignError as exc:
                _form_error(form, exc)
            else:
                db.session.add(template)
                db.session.commit()
                flash(_("Template saved."), "success")
                return redirect(url_for("campaigns.templates"))
    return render_template(
        "campaigns/template_form.html", form=form, template=None, can_share=_can_share()
    ), (400 if form.errors else 200)


def _can_share() -> bool:
    user = acting_user()
    return user.role == Role.CONSORTIUM_ADMIN and bool(current_library().consortium_id)


def _template_data(form: TemplateForm) -> dict:
    return {
        "name": form.name.data,
        "kind": form.kind.data,
        "language": form.language.data,
        "source": form.source.data,
    }


@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
@role_required(Role.STAFF)
def edit_template(template_id: int):
    """Show a stored template; its owners may change it."""
    template = _template_or_404(template_id)
    editable = services.can_edit_template(acting_user(), template)
    form = TemplateForm(obj=template)
    if request.method == "POST":
        if not editable:
            abort(403)
        if form.validate_on_submit():
            try:
                services.apply_template(template, _template_data(form))
            except services.CampaignError as exc:
                db.session.rollback()
                _form_error(form, exc)
            else:
                db.session.commit()
                flash(_("Template saved."), "success")
                return redirect(url_for("campaigns.templates"))
    if request.method == "GET":
        form.kind.data = template.kind.value
    return render_template(
        "campaigns/template_form.html",
        form=form,
        template=template,
        editable=editable,
        can_share=False,
    ), (400 if form.errors else 200)


@bp.post("/templates/<int:template_id>/delete")
@role_required(Role.EDITOR)
def delete_template(template_id: int):
    """Delete a stored template; drafts using it fall back to the built-in one."""
    template = _template_or_404(template_id)
    if not services.can_edit_template(acting_user(), template):
        abort(403)
    db.session.delete(template)
    db.session.commit()
    flash(_("Template deleted."), "success")
    return redirect(url_for("campaigns.templates"))


# ----------------------------------------------------------------- campaigns


@bp.get("/clubs/<int:club_id>/campaigns")
@role_required(Role.STAFF)
def campaigns(club_id: int):
    """A club's newsletters."""
    club = get_owned(Club, club_id)
    return render_template(
        "campaigns/campaigns.html",
        club=club,
        campaigns=services.club_campaigns(db.session, club),
        kinds={c.value: c.label for c in KIND_CHOICES},
    )


def _new_campaign_form(club: Club) -> NewCampaignForm:
    library = club.library
    form = NewCampaignForm()
    zone = services.library_zone(library)
    form.event_id.choices = [("", _("(none)"))] + [
        (str(e.id), f"{local_time(e.starts_at, zone)} · {e.title}")
        for e in services.library_events(db.session, library)
    ]
    form.template.choices = [("", _("The kind's standard template"))] + [
        (c.ref, _template_label(c))
        for c in services.template_choices(db.session, library)
    ]
    return form


def _template_label(choice: services.TemplateChoice) -> str:
    where = (
        _("built-in")
        if choice.builtin
        else (_("shared") if choice.shared else _("own"))
    )
    return f"{choice.name} ({choice.language}, {where})"


@bp.route("/clubs/<int:club_id>/campaigns/new", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def new_campaign(club_id: int):
    """Start a draft: its kind, event, template and subject; then the editor."""
    club = get_owned(Club, club_id)
    form = _new_campaign_form(club)
    if request.method == "GET" and request.args.get("event_id"):
        form.event_id.data = request.args["event_id"]
    if form.validate_on_submit():
        try:
            campaign = services.create_campaign(
                db.session,
                club,
                acting_user(),
                {
                    "kind": form.kind.data,
                    "event_id": form.event_id.data,
                    "template": form.template.data,
                    "subject": form.subject.data,
                },
            )
        except services.CampaignError as exc:
            db.session.rollback()
            _form_error(form, exc)
        else:
            db.session.commit()
            return redirect(url_for("campaigns.editor", campaign_id=campaign.id))
    return render_template("campaigns/new_campaign.html", form=form, club=club), (
        400 if form.errors else 200
    )


@bp.route("/campaigns/<int:campaign_id>", methods=["GET", "POST"])
@role_required(Role.STAFF)
def editor(campaign_id: int):
    """The editor: form and blocks on the left, live preview on the right.

    Without JavaScript the form still saves (POST, with the version).
    """
    campaign = get_owned(Campaign, campaign_id)
    conflict = None
    if request.method == "POST":
        if not acting_user().has_role(Role.EDITOR):
            abort(403)
        data = _posted_draft()
        try:
            services.update_campaign(
                db.session,
                campaign,
                acting_user(),
                data,
                request.form.get("version", type=int),
            )
        except services.VersionConflict as exc:
            db.session.rollback()
            conflict = exc.message
        except services.CampaignError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return _editor_page(campaign), 400
        else:
            db.session.commit()
            flash(_("Draft saved."), "success")
            return redirect(url_for("campaigns.editor", campaign_id=campaign.id))
        return _editor_page(campaign, conflict=conflict, unsaved=data), 409
    return _editor_page(campaign)


def _posted_draft() -> dict:
    data = {
        field: request.form[field]
        for field in ("subject", "preheader", "template", "event_id", "custom_mjml")
        if field in request.form
    }
    if "blocks" in request.form:
        try:
            data["blocks"] = json.loads(request.form["blocks"])
        except ValueError:
            data["blocks"] = None
    return data


def _editor_page(campaign: Campaign, conflict: str | None = None, unsaved=None):
    library, club = campaign.library, campaign.club
    zone = services.library_zone(library)
    state = services.campaign_data(campaign)
    if unsaved:
        state.update(unsaved)
        state["version"] = campaign.version
    return render_template(
        "campaigns/editor.html",
        campaign=campaign,
        club=club,
        state=state,
        conflict=conflict,
        editable=campaign.status == "draft" and acting_user().has_role(Role.EDITOR),
        templates=[
            {"ref": c.ref, "label": _template_label(c), "kind": c.kind}
            for c in services.template_choices(db.session, library)
        ],
        events=[
            {"id": e.id, "label": f"{local_time(e.starts_at, zone)} · {e.title}"}
            for e in services.library_events(db.session, library)
        ],
        members=compose.preview_members(db.session, club),
        test_form=TestSendForm(),
        web_url=compose.web_url(campaign),
    )


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise services.CampaignError(_("Send the draft as a JSON object."), None)
    return data


def _json_error(exc: services.CampaignError, status: int = 422):
    return jsonify(
        {"error": {"code": "invalid", "message": exc.message, "field": exc.field}}
    ), status


@bp.post("/campaigns/<int:campaign_id>/autosave")
@role_required(Role.EDITOR)
def autosave(campaign_id: int):
    """Save the editor's draft (JSON with its version); 409 if someone else saved."""
    campaign = get_owned(Campaign, campaign_id)
    try:
        data = _json_body()
        services.update_campaign(
            db.session, campaign, acting_user(), data, data.get("version")
        )
    except services.VersionConflict as exc:
        db.session.rollback()
        theirs = db.session.get(Campaign, campaign_id)
        body = {
            "error": {"code": "conflict", "message": exc.message, "field": "version"},
            "current": services.campaign_data(theirs),
        }
        return jsonify(body), 409
    except services.CampaignError as exc:
        db.session.rollback()
        return _json_error(exc)
    db.session.commit()
    return jsonify(services.campaign_data(campaign))


@bp.post("/campaigns/<int:campaign_id>/preview")
@role_required(Role.STAFF)
def preview(campaign_id: int):
    """Render the editor's unsaved form: HTML, text, warnings (or the error's line)."""
    from campaigns.rendering import RenderError

    campaign = get_owned(Campaign, campaign_id)
    try:
        data = _json_body()
        draft = compose.draft_from(db.session, campaign, data)
        result = compose.preview(db.session, campaign, draft, data.get("subscriber_id"))
    except services.CampaignError as exc:
        return _json_error(exc)
    except RenderError as exc:
        body = {"code": "render_error", "message": exc.message, "line": exc.line}
        return jsonify({"error": {**body, "field": "custom_mjml"}}), 422
    return jsonify(result)


@bp.get("/campaigns/<int:campaign_id>/template-source")
@role_required(Role.STAFF)
def template_source(campaign_id: int):
    """The MJML of a template, to start the "edit MJML" mode from."""
    campaign = get_owned(Campaign, campaign_id)
    ref = request.args.get("template") or services.template_ref(campaign)
    try:
        services.resolve_template_ref(db.session, campaign.library, ref)
    except services.CampaignError as exc:
        return _json_error(exc, 404)
    source = compose.template_source(
        db.session, campaign.library, ref, campaign.kind.value, campaign.club.language
    )
    return jsonify({"template": ref, "source": source})


@bp.post("/campaigns/<int:campaign_id>/test")
@role_required(Role.EDITOR)
def test_send(campaign_id: int):
    """Send the saved draft to a few addresses, marked as a test."""
    from campaigns.rendering import RenderError

    campaign = get_owned(Campaign, campaign_id)
    wants_json = request.is_json
    data = request.get_json(silent=True) if wants_json else request.form
    data = data if isinstance(data, dict) or not wants_json else {}
    try:
        mails = compose.send_test(
            db.session,
            campaign,
            data.get("addresses", ""),
            data.get("subscriber_id") or None,
        )
    except services.CampaignError as exc:
        db.session.rollback()
        if wants_json:
            return _json_error(exc)
        flash(exc.message, "error")
        return _editor_page(campaign), 400
    except RenderError as exc:
        db.session.rollback()
        message = _("The newsletter cannot be rendered: %(error)s", error=str(exc))
        if wants_json:
            return _json_error(services.CampaignError(message, "custom_mjml"))
        flash(message, "error")
        return _editor_page(campaign), 400
    sent = [m.recipient for m in mails if m.status == "sent"]
    waiting = [m.recipient for m in mails if m.status != "sent"]
    message = (
        _("Test sent to %(addresses)s.", addresses=", ".join(sent)) if sent else ""
    )
    if waiting:
        message += " " + _(
            "Not delivered yet (will be retried): %(addresses)s.",
            addresses=", ".join(waiting),
        )
    if wants_json:
        return jsonify({"sent": sent, "queued": waiting, "message": message.strip()})
    flash(message.strip(), "success" if not waiting else "error")
    return redirect(url_for("campaigns.editor", campaign_id=campaign.id))


@bp.post("/campaigns/<int:campaign_id>/delete")
@role_required(Role.EDITOR)
def delete_campaign(campaign_id: int):
    """Delete a draft."""
    campaign = get_owned(Campaign, campaign_id)
    if campaign.status != "draft":
        abort(409, description=_("Only drafts can be deleted."))
    club_id = campaign.club_id
    db.session.delete(campaign)
    db.session.commit()
    flash(_("Draft deleted."), "success")
    return redirect(url_for("campaigns.campaigns", club_id=club_id))


# ----------------------------------------------------------------- sending


@bp.app_template_global()
def sending_state(campaign: Campaign) -> dict:
    """What the campaign page shows about sending: schedule, progress, actions."""
    zone = services.library_zone(campaign.library)
    state = sending.progress(db.session, campaign)
    return {
        "progress": state,
        "send_at": local_time(campaign.send_at, zone) if campaign.send_at else None,
        "expected_end": (
            local_time(state.expected_end, zone) if state.expected_end else None
        ),
        "zone": zone,
        "form": ScheduleForm(repeat=campaign.repeat.value if campaign.repeat else ""),
        "proposed": (
            local_time(campaign.send_at, zone, "%Y-%m-%dT%H:%M")
            if campaign.status is CampaignStatus.DRAFT and campaign.send_at
            else ""
        ),
        "next_issue": db.session.scalar(
            select(Campaign).where(Campaign.previous_issue_id == campaign.id)
        )
        if campaign.repeat
        else None,
        "bounces": bounces.campaign_counts(db.session, campaign.id),
        "policy": bounces.policy_problems(db.session, campaign.id),
    }


def _sending_action(campaign_id: int, action):
    """Run a state change on the library's campaign; a refused one is a clear 400."""
    campaign = get_owned(Campaign, campaign_id)
    try:
        message = action(campaign)
    except (sending.SendingError, services.CampaignError) as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return _editor_page(campaign), 400
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("campaigns.editor", campaign_id=campaign.id))


@bp.post("/campaigns/<int:campaign_id>/schedule")
@role_required(Role.EDITOR)
def schedule(campaign_id: int):
    """Send now, at a fixed time, or relative to the campaign's event."""
    form = ScheduleForm()

    def act(campaign: Campaign) -> str:
        if not form.validate():
            field, errors = next(iter(form.errors.items()))
            raise sending.SendingError(f"{form[field].label.text}: {errors[0]}", field)
        mode = ScheduleMode(form.mode.data)
        zone = services.library_zone(campaign.library)
        at = services.parse_local(form.send_at.data, zone, "send_at")
        hours = form.offset_hours.data or 0
        due = sending.schedule(
            campaign,
            mode,
            send_at=at,
            offset_minutes=round(hours * 60),
            repeat=Repeat(form.repeat.data) if form.repeat.data else None,
        )
        if mode is ScheduleMode.NOW:
            return _("Sending starts within a few seconds.")
        return _("Scheduled for %(when)s.", when=local_time(due, zone))

    return _sending_action(campaign_id, act)


# The buttons that steer a scheduled or sending campaign: each changes its state
# (sending.py checks the transition) and tells the editor what happened.
_STEERING = {
    "unschedule": (sending.unschedule, _l("The newsletter is a draft again.")),
    "pause": (sending.pause, _l("Sending paused.")),
    "resume": (sending.resume, _l("Sending resumed.")),
    "cancel": (lambda c: sending.cancel(db.session, c), _l("Sending cancelled.")),
}


def _steering_view(change, done):
    def view(campaign_id: int):
        def act(campaign: Campaign) -> str:
            change(campaign)
            return str(done)

        return _sending_action(campaign_id, act)

    return view


for _action, (_change, _done) in _STEERING.items():
    bp.add_url_rule(
        f"/campaigns/<int:campaign_id>/{_action}",
        endpoint=_action,
        view_func=role_required(Role.EDITOR)(_steering_view(_change, _done)),
        methods=["POST"],
    )


@bp.get("/campaigns/<int:campaign_id>/progress")
@role_required(Role.STAFF)
def progress(campaign_id: int):
    """Live progress as JSON, for the campaign page."""
    campaign = get_owned(Campaign, campaign_id)
    state = sending_state(campaign)
    return jsonify(
        {
            "status": campaign.status.value,
            "status_label": campaign_status_label(campaign.status),
            **state["progress"].as_dict(),
            "expected_end_local": state["expected_end"],
        }
    )
