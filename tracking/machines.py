"""Telling people from machines: every open and click gets a verdict and a reason.

Hits are kept either way (mature tools classify rather than drop) so staff can see
human and machine counts apart. The rules follow what mail providers and security
gateways are known to do (see EMAIL_FACTS.md):

- HEAD requests are never a person.
- Apple Mail Privacy Protection fetches every image through Apple's proxies, with a
  bare `Mozilla/5.0` user agent, from Apple's network (17.0.0.0/8).
- Gmail and Yahoo load images through their proxies (GoogleImageProxy,
  YahooMailProxy) and cache them: the open says little about a person.
- Security scanners (Safe Links, Mimecast, Proofpoint, Barracuda...) follow every
  link of a message, often within a second or two; some announce themselves in
  the user agent, others look like browsers, but none can resist the honeypot link
  that no person sees.
The address and user agent are only looked at here, never stored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache


@dataclass(frozen=True)
class Verdict:
    """Human or machine, and the rule that decided."""

    human: bool
    reason: str


HUMAN = Verdict(True, "human")

APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
BURST_WINDOW = timedelta(seconds=2)
BURST_LINKS = 3  # distinct links of one message within the window
TOO_SOON = timedelta(seconds=5)  # after our server handed the message over

_SCANNER_AGENTS = re.compile(
    r"barracuda|mimecast|proofpoint|safelinks|symantec|forcepoint|trendmicro"
    r"|fortiguard|sophos|cisco|ironport|appriver|zscaler|paloalto|checkpoint"
    r"|bingpreview|skypeuripreview"
    r"|python-requests|python-urllib|aiohttp|curl/|wget|go-http-client|okhttp"
    r"|java/|libwww|httpclient|headlesschrome|phantomjs"
    r"|bot\b|bot/|spider|crawler|slurp|facebookexternalhit|linkexpanding"
    r"|preview|scanner",
    re.IGNORECASE,
)

# Outlook loads images as "Microsoft Office/16.0 (... Microsoft Outlook ...)": a
# person's open. A *click* never comes with that agent (Outlook hands links to the
# browser); Office's link preview and protocol discovery do.
_OFFICE_AGENT = re.compile(r"microsoft office|ms-office|ms office", re.IGNORECASE)


def _from_apple(ip: str | None) -> bool:
    if not ip or "17." not in ip:  # most addresses: no need to parse them
        return False
    try:
        return ipaddress.ip_address(ip) in APPLE_NETWORK
    except ValueError:
        return False


def _common(method: str, user_agent: str | None) -> Verdict | None:
    if method.upper() == "HEAD":
        return Verdict(False, "head_request")
    return _agent_verdict(user_agent or "")


# Mail clients and scanners send a few thousand distinct agents between them;
# matching the long pattern again for each hit would cost more than the rest of
# the redirect.
@lru_cache(maxsize=8192)
def _agent_verdict(user_agent: str) -> Verdict | None:
    agent = user_agent.strip()
    if not agent:
        return Verdict(False, "no_user_agent")
    if _SCANNER_AGENTS.search(agent):
        return Verdict(False, "known_scanner")
    return None


@lru_cache(maxsize=8192)
def _office_agent(user_agent: str) -> bool:
    return bool(_OFFICE_AGENT.search(user_agent))


def classify_open(
    method: str,
    user_agent: str | None,
    ip: str | None,
    *,
    sent_at: datetime | None = None,
    now: datetime | None = None,
) -> Verdict:
    """The verdict on one load of the open pixel."""
    agent = (user_agent or "").strip()
    if "GoogleImageProxy" in agent:
        return Verdict(False, "google_image_proxy")
    if "YahooMailProxy" in agent:
        return Verdict(False, "yahoo_image_proxy")
    if agent == "Mozilla/5.0" or _from_apple(ip):
        return Verdict(False, "apple_privacy_proxy")
    verdict = _common(method, user_agent)
    if verdict is not None:
        return verdict
    if sent_at and now and now - sent_at < TOO_SOON:
        return Verdict(False, "too_soon_after_sending")
    return HUMAN


def classify_click(
    method: str,
    user_agent: str | None,
    *,
    honeypot: bool = False,
    link_id: int,
    recent_clicks: Iterable[tuple[int, datetime]] = (),
    sent_at: datetime | None = None,
    now: datetime,
) -> Verdict:
    """The verdict on one click, given the message's other clicks just before it.

    `recent_clicks` are (link id, time) of the same message's earlier clicks.
    """
    if honeypot:
        return Verdict(False, "honeypot_link")
    if _office_agent(user_agent or ""):
        return Verdict(False, "known_scanner")
    verdict = _common(method, user_agent)
    if verdict is not None:
        return verdict
    if sent_at and now - sent_at < TOO_SOON:
        return Verdict(False, "too_soon_after_sending")
    burst = {lid for lid, at in recent_clicks if now - at <= BURST_WINDOW}
    burst.add(link_id)
    if len(burst) >= BURST_LINKS:
        return Verdict(False, "scanner_burst")
    return HUMAN
