"""The click redirect (`/c/<token>`) and the open pixel (`/o/<token>.gif`).

Both are loaded by every mail client and scanner, so their usual answers come
from a small WSGI layer in front of Flask (`TrackingMiddleware`): check the
signature, look the link up (cached per process: stored links never change),
buffer the hit for the recorder and answer, with none of Flask's per-request
work. Anything unusual (a bad token, a link that is gone, the database away
when a link is not cached yet) goes on to the Flask views below, which answer
the same way or with a page in the site's style.

- A click answers 302 to exactly the stored URL, `Referrer-Policy: no-referrer`
  and `Cache-Control: no-store`. A token that is tampered with, forged or names
  no stored link gets a 404 page and never a redirect.
- The pixel always answers 200 with a 43-byte GIF and `no-store`, even for a bad
  token (a broken image helps nobody); only good tokens are recorded.
- Each hit gets its request-local verdict here (HEAD, user agent, Apple's
  network; see tracking.machines); the roll-up adds those that need the other
  hits of the message. The address and user agent are never stored.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app
from flask_babel import gettext as _
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.urls import iri_to_uri

from klubpost.db import db, utcnow
from klubpost.security import InvalidToken
from tracking import machines
from tracking.models import EventKind, TrackedLink
from tracking.recorder import Recorder
from tracking.tokens import TokenSigner

log = logging.getLogger("klubpost.tracking")

# The classic transparent 1x1 GIF: 43 bytes.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
LINK_CACHE_SIZE = 50_000
CLICK_PREFIX, OPEN_PREFIX, OPEN_SUFFIX = "/c/", "/o/", ".gif"

bp = Blueprint("tracking", __name__)


@dataclass(frozen=True)
class Target:
    """Where a stored link leads, as the redirect needs it."""

    campaign_id: int
    location: str  # the stored URL, as an ASCII header value
    honeypot: bool


class Tracker:
    """One app's tracking: its token signer, hit recorder and link cache."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.signer = TokenSigner(app.config)
        self._links: dict[int, Target] = {}
        self._recorder: Recorder | None = None

    @property
    def recorder(self) -> Recorder:
        """The process's hit recorder (made on first use, in the worker)."""
        if self._recorder is None:
            with self.app.app_context():
                engine = db.engine
            config = self.app.config
            self._recorder = Recorder(
                engine,
                interval=config["TRACKING_FLUSH_SECONDS"],
                max_buffer=config["TRACKING_BUFFER_MAX"],
            )
        return self._recorder

    def close(self) -> None:
        """Write the buffered hits and stop the recorder's thread (app teardown)."""
        if self._recorder is not None:
            self._recorder.close()

    def target(self, link_id: int) -> Target | None:
        """The stored link, or None; raises SQLAlchemyError if the database is away."""
        target = self._links.get(link_id)
        if target is None:
            target = self._load(link_id)
            if target is not None:
                if len(self._links) >= LINK_CACHE_SIZE:
                    self._links.clear()
                self._links[link_id] = target
        return target

    def _load(self, link_id: int) -> Target | None:
        engine: Engine = self.recorder.engine
        with engine.connect() as conn:
            row = conn.execute(
                select(
                    TrackedLink.campaign_id, TrackedLink.url, TrackedLink.honeypot
                ).where(TrackedLink.id == link_id)
            ).first()
        if row is None:
            return None
        try:
            location = iri_to_uri(row.url)
            location.encode("ascii")
        except (ValueError, UnicodeError):  # stored before links were checked
            log.warning("tracked link %s can't be a redirect", link_id)
            return None
        return Target(row.campaign_id, location, row.honeypot)

    def click(self, token: str, environ: dict[str, Any]) -> Target:
        """Record a click and say where it leads.

        Raises InvalidToken, LookupError (no such link) or SQLAlchemyError.
        """
        link_id, send_id = self.signer.read_click(token)
        target = self.target(link_id)
        if target is None:
            raise LookupError(link_id)
        now = utcnow()
        verdict = machines.classify_click(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("HTTP_USER_AGENT"),
            honeypot=target.honeypot,
            link_id=link_id,
            now=now,
        )
        self._record(
            target.campaign_id, send_id, link_id, EventKind.CLICK, now, verdict
        )
        return target

    def open(self, token: str, environ: dict[str, Any]) -> None:
        """Record an open if the token is good; never raises for a bad one."""
        try:
            campaign_id, send_id = self.signer.read_open(token)
        except InvalidToken:
            return
        now = utcnow()
        verdict = machines.classify_open(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("HTTP_USER_AGENT"),
            environ.get("REMOTE_ADDR"),
        )
        self._record(campaign_id, send_id, None, EventKind.OPEN, now, verdict)

    def _record(self, campaign_id, send_id, link_id, kind, now, verdict) -> None:
        try:
            self.recorder.record(
                (
                    campaign_id,
                    send_id,
                    link_id,
                    kind.value,
                    now,
                    verdict.human,
                    verdict.reason,
                )
            )
        except Exception:  # recording must never cost the member their redirect
            log.exception("tracking hit not recorded")


def tracker() -> Tracker:
    """The current app's tracker."""
    return current_app.extensions["klubpost_tracking"]


# ------------------------------------------------------------------ WSGI layer

StartResponse = Callable[..., Any]


def _pixel_headers() -> list[tuple[str, str]]:
    return [
        ("Content-Type", "image/gif"),
        ("Content-Length", str(len(PIXEL))),
        ("Cache-Control", "no-store, max-age=0"),
        ("X-Robots-Tag", "noindex"),
    ]


def _redirect_headers(location: str) -> list[tuple[str, str]]:
    return [
        ("Location", location),
        ("Content-Length", "0"),
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Robots-Tag", "noindex"),
    ]


class TrackingMiddleware:
    """Answers good clicks and every pixel before Flask; the rest goes to `app`."""

    def __init__(self, tracker: Tracker, app: Callable[..., Iterable[bytes]]) -> None:
        self.tracker = tracker
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Serve /c/ and /o/ quickly when all is well; pass everything else on."""
        path: str = environ.get("PATH_INFO") or ""
        method = environ.get("REQUEST_METHOD")
        if method in ("GET", "HEAD"):
            if path.startswith(OPEN_PREFIX) and path.endswith(OPEN_SUFFIX):
                self.tracker.open(path[3:-4], environ)
                start_response("200 OK", _pixel_headers())
                return [b""] if method == "HEAD" else [PIXEL]
            if path.startswith(CLICK_PREFIX):
                try:
                    target = self.tracker.click(path[3:], environ)
                except (InvalidToken, LookupError, SQLAlchemyError):
                    return self.app(environ, start_response)  # the page says why
                start_response("302 Found", _redirect_headers(target.location))
                return [b""]
        return self.app(environ, start_response)


# ------------------------------------------------------------------ Flask views


@bp.get("/c/<path:token>", merge_slashes=False)
def click(token: str):
    """A tracked link: redirect to its stored URL, or say why not."""
    try:
        target = tracker().click(token, _environ())
    except (InvalidToken, LookupError):
        abort(
            404,
            description=_(
                "This link does not work: it may have been cut off or changed. "
                "Open it again from the newsletter, or copy the whole address."
            ),
        )
    except SQLAlchemyError:
        log.exception("tracked link lookup failed")
        abort(
            503,
            description=_(
                "This link can't be followed right now. Try again in a minute."
            ),
        )
    return Response(status=302, headers=_redirect_headers(target.location))


@bp.get("/o/<path:token>.gif", merge_slashes=False)
def pixel(token: str):
    """The open pixel: always the GIF."""
    tracker().open(token, _environ())
    return PIXEL, 200, _pixel_headers()


def _environ() -> dict[str, Any]:
    from flask import request

    return request.environ


def init_app(app: Flask) -> None:
    """Register the views and put the fast WSGI layer in front of Flask."""
    app.extensions["klubpost_tracking"] = tracker_ = Tracker(app)
    app.register_blueprint(bp)
    app.wsgi_app = TrackingMiddleware(tracker_, app.wsgi_app)  # type: ignore[method-assign]
