"""What sending needs for tracked mails: stored links, tokens, pixel and honeypot.

When sending starts (`campaigns.sending.start`), `store_links` keeps the
campaign's tracked links as `TrackedLink` rows (position = place in the
newsletter's list of links, from 1) plus one honeypot link (position 0), and
`tracked_column` decides per member, in the statement that fixes the audience,
whether their copy is tracked:

- the club's `tracking_mode` is off: nobody;
- the club requires tracking consent: only members who gave it;
- otherwise everybody.

A tracked copy gets a click URL for each tracked link, the open pixel and the
hidden honeypot link; in `individual` mode the tokens name the member's
`send_log` row, in `anonymous` mode only the link or campaign (one set of URLs
for everybody, made once). An untracked copy gets the plain links and neither
pixel nor honeypot: nothing in it names the member for tracking. Links an editor
excluded from tracking, and mailto: links, always stay plain.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import Boolean, ColumnElement, literal, select
from sqlalchemy.orm import Session
from werkzeug.urls import iri_to_uri

from campaigns.rendering import CompiledNewsletter, LinkInfo
from klubpost.links import external_url
from subscribers.models import Club, Membership
from tracking.models import TrackedLink, TrackingMode
from tracking.tokens import TokenSigner

HONEYPOT_POSITION = 0
_MARK = "KLUBPOST-TRACK"

# Invisible to people (no text, no size, hidden from screen readers and from
# keyboard focus) and so followed only by machines that fetch every link.
HONEYPOT_HTML = (
    '<a href="{url}" aria-hidden="true" tabindex="-1" '
    'style="display:none;font-size:0;line-height:0;max-height:0;width:0;'
    'height:0;overflow:hidden;mso-hide:all"></a>'
)
PIXEL_HTML = (
    '<img src="{url}" width="1" height="1" alt="" aria-hidden="true" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">'
)


MAX_URL = 2000  # TrackedLink.url


def trackable(link: LinkInfo) -> bool:
    """Whether clicks on this link go through the redirect: an http(s) link that
    fits the table and makes a valid redirect header (else it stays plain)."""
    if not (link.track and link.url.lower().startswith(("http://", "https://"))):
        return False
    if len(link.url) > MAX_URL:
        return False
    try:
        iri_to_uri(link.url).encode("ascii")
    except (ValueError, UnicodeError):
        return False
    return True


def tracked_column(club: Club) -> ColumnElement[bool]:
    """`send_log.tracked` for a member, in the INSERT ... SELECT of the audience."""
    if club.tracking_mode is TrackingMode.OFF:
        return literal(False, Boolean)
    if club.tracking_consent_required:
        return Membership.tracking_consent
    return literal(True, Boolean)


def store_links(
    session: Session, campaign_id: int, club: Club, newsletter: CompiledNewsletter
) -> None:
    """Keep the campaign's tracked links and its honeypot (unless tracking is off)."""
    if club.tracking_mode is TrackingMode.OFF:
        return
    rows = [
        TrackedLink(
            campaign_id=campaign_id,
            position=index + 1,
            url=link.url,
            label=(link.label or "")[:300],
            tag=link.tag,
        )
        for index, link in enumerate(newsletter.links)
        if trackable(link)
    ]
    rows.append(
        TrackedLink(
            campaign_id=campaign_id,
            position=HONEYPOT_POSITION,
            # Where a machine that follows it lands: the site's front page.
            url=current_app.config["BASE_URL"] + "/",
            label="",
            honeypot=True,
        )
    )
    session.add_all(rows)


class MailTracking:
    """One campaign's tracked links, turned into each member's URLs."""

    def __init__(
        self,
        signer: TokenSigner,
        campaign_id: int,
        mode: TrackingMode,
        links: dict[int, int],
        honeypot_id: int,
    ) -> None:
        self.signer = signer
        self.campaign_id = campaign_id
        self.individual = mode is TrackingMode.INDIVIDUAL
        self.links = links  # index in newsletter.links -> tracked_link.id
        self.honeypot_id = honeypot_id
        self._link_ids = [*links.values(), honeypot_id]
        # Each URL around its token: a member's URL is three strings joined.
        self._click = external_url("tracking.click", token=_MARK).split(_MARK, 1)
        self._open = external_url("tracking.pixel", token=_MARK).split(_MARK, 1)
        self._anonymous = None if self.individual else self._urls(None)

    def for_member(
        self, send_id: int, tracked: bool
    ) -> tuple[dict[int, str] | None, str]:
        """(link URLs by index, HTML for pixel and honeypot) of one member's copy."""
        if not tracked:
            return None, ""
        if self._anonymous is not None:
            return self._anonymous
        return self._urls(send_id)

    def _urls(self, send_id: int | None) -> tuple[dict[int, str], str]:
        before, after = self._click
        # The honeypot's token is made with the links' and comes last.
        *tokens, honeypot = self.signer.clicks(self._link_ids, send_id)
        urls = {
            index: before + token + after
            for index, token in zip(self.links, tokens, strict=True)
        }
        pixel = self.signer.open(self.campaign_id, send_id).join(self._open)
        html = HONEYPOT_HTML.format(url=before + honeypot + after)
        return urls, html + PIXEL_HTML.format(url=pixel)


def _link_ids(rows, newsletter: CompiledNewsletter) -> dict[int, int]:
    """Index in the newsletter's links -> stored link id, for the links that are
    still what was stored when sending started. (The newsletter is rendered
    again by each sender; if an event or template changed meanwhile, a link that
    moved or changed stays plain rather than redirect somewhere else.)"""
    links = newsletter.links
    return {
        row.position - 1: row.id
        for row in rows
        if not row.honeypot
        and row.position - 1 < len(links)
        and links[row.position - 1].url == row.url
    }


def mail_tracking(
    session: Session, campaign_id: int, club: Club, newsletter: CompiledNewsletter
) -> MailTracking | None:
    """The campaign's tracking for its mails, or None if its mails are untracked."""
    if club.tracking_mode is TrackingMode.OFF:
        return None
    rows = session.execute(
        select(
            TrackedLink.id, TrackedLink.position, TrackedLink.honeypot, TrackedLink.url
        ).where(TrackedLink.campaign_id == campaign_id)
    ).all()
    honeypot = next((row.id for row in rows if row.honeypot), None)
    if honeypot is None:
        return None  # started before tracking existed, or with tracking off
    return MailTracking(
        current_app.extensions["klubpost_tracking"].signer,
        campaign_id,
        club.tracking_mode,
        _link_ids(rows, newsletter),
        honeypot,
    )
