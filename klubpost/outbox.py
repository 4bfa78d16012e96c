"""The development outbox: staff read the mails the built-in transport caught."""

from __future__ import annotations

from email import message_from_bytes, policy

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from accounts.models import Role
from klubpost.auth import acting_user, allowed_library_ids, role_required
from klubpost.db import db
from klubpost.mail import OutboxMessage

bp = Blueprint("outbox", __name__, url_prefix="/outbox")


@bp.get("/")
@role_required(Role.STAFF)
def index():
    """The newest caught mails of the user's libraries."""
    rows = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.library_id.in_(allowed_library_ids(acting_user())))
        .order_by(OutboxMessage.id.desc())
        .limit(200)
    ).all()
    return render_template("outbox/index.html", messages=rows)


@bp.get("/<int:message_id>")
@role_required(Role.STAFF)
def show(message_id: int):
    """One caught mail: its headers, text and HTML parts."""
    row = db.session.get(OutboxMessage, message_id)
    if row is None or row.library_id not in allowed_library_ids(acting_user()):
        abort(404)
    msg = message_from_bytes(row.raw, policy=policy.default)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return render_template(
        "outbox/show.html",
        row=row,
        headers=list(msg.items()),
        text=text.get_content() if text else "",
        html=html.get_content() if html else "",
    )
