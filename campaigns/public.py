"""Public pages of newsletters: the web version ("view in browser"), the archive.

A web version's address carries a signed token naming the campaign, so it cannot
be guessed from another one's; it shows the newsletter without anyone's personal
data. A club's archive page exists only while the club has it switched on.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from flask_babel import gettext as _
from sqlalchemy import select

from accounts.models import Library
from campaigns import compose
from campaigns.models import Campaign
from klubpost.db import db
from klubpost.i18n import use_language
from klubpost.security import InvalidToken, sign, unsign
from subscribers.models import Club

bp = Blueprint("campaigns_public", __name__)


@bp.get("/web/<token>")
def web_version(token: str):
    """A newsletter as a web page, personalised for no one."""
    from campaigns.rendering import RenderError

    try:
        (campaign_id,) = unsign("web", token, 1)
    except InvalidToken:
        return _not_found()
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        return _not_found()
    try:
        html = compose.web_version(db.session, campaign)
    except RenderError:
        use_language(campaign.club.language)
        abort(404, description=_("This newsletter cannot be shown right now."))
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        # Not for search engines: a newsletter is for its club's members.
        "X-Robots-Tag": "noindex",
        "Referrer-Policy": "no-referrer",
    }
    return html, 200, headers


def _not_found():
    abort(404, description=_("There is no such newsletter (any more)."))


@bp.get("/archive/<library_slug>/<club_slug>")
def archive(library_slug: str, club_slug: str):
    """A club's sent newsletters, newest first, if the club publishes them."""
    club = db.session.scalar(
        select(Club)
        .join(Library)
        .where(Library.slug == library_slug, Club.slug == club_slug)
    )
    if club is None or not club.public_archive:
        abort(404, description=_("This club has no public archive."))
    use_language(club.language)
    sent = db.session.scalars(
        select(Campaign)
        .where(Campaign.club_id == club.id, Campaign.sent_at.is_not(None))
        .order_by(Campaign.sent_at.desc())
        .limit(500)
    ).all()
    issues = [(c, sign("web", c.id)) for c in sent]
    return render_template("campaigns/archive.html", club=club, issues=issues)
