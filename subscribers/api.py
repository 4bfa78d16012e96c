"""JSON API for libraries, clubs, subscribers, memberships and bulk import."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from klubpost.auth import user_for_token
from klubpost.errors import ApiError
from klubpost.security import csrf

bp = Blueprint("api", __name__, url_prefix="/api")
# Token-authenticated and cookie-free, so cross-site request forgery cannot apply.
csrf.exempt(bp)


@bp.before_request
def authenticate():
    """Every API call needs a valid, unrevoked personal token."""
    from flask import request

    if request.endpoint == "api.openapi":
        return
    user = user_for_token(request.headers.get("Authorization"))
    if user is None:
        raise ApiError(
            401,
            "unauthorized",
            "A valid API token is required (Authorization: Bearer kp_...).",
        )
    g.api_user = user


@bp.get("/libraries")
def libraries():
    """The libraries the token's user may see."""
    from sqlalchemy import select

    from accounts.models import Library
    from klubpost.auth import allowed_library_ids
    from klubpost.db import db

    rows = db.session.scalars(
        select(Library)
        .where(Library.id.in_(allowed_library_ids(g.api_user)))
        .order_by(Library.id)
    )
    return jsonify(
        {"items": [{"id": lib.id, "name": lib.name, "slug": lib.slug} for lib in rows]}
    )


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API."""
    return jsonify(
        {
            "openapi": "3.1.0",
            "info": {"title": "Klubpost API", "version": "1"},
            "paths": {},
        }
    )
