"""JSON API for events, campaigns, previews and test sends."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("campaigns_api", __name__, url_prefix="/api")
