"""Public pages of newsletters: the web version ("view in browser"), the archive."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("campaigns_public", __name__)
