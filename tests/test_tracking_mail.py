"""Tracked mails as members receive them: consent, the club's mode, excluded links."""

from __future__ import annotations

import re

import pytest

from campaigns import sending
from conftest import make_club, make_library
from subscribers.models import Club
from tracking.models import EventKind, TrackingMode
from tracking_kit import (
    BROWSER,
    CLICK_URL,
    PIXEL_URL,
    PLAIN_URLS,
    TRACKED_URLS,
    add_member,
    events,
    flush,
    links_of,
    make_tracked_campaign,
    send_log,
    signer,
    start,
)


@pytest.fixture
def app_config(smtp_app_config):
    smtp_app_config["TRACKING_FLUSH_SECONDS"] = 3600
    return smtp_app_config


def _club(db, **kw) -> Club:
    return make_club(db, make_library(db), **kw)


def _send(app, db, club: Club, members: dict[str, bool]):
    """Send the tracked campaign to members {name: tracking consent}."""
    memberships = {
        name: add_member(db, club, name, tracking=consent)
        for name, consent in members.items()
    }
    campaign = make_tracked_campaign(db, club)
    start(db, campaign)
    sending.Sender(app, connections=1).run()
    return campaign, memberships


def _mail(smtp_server, name: str) -> tuple[str, str]:
    """The (HTML, text) of the mail that reached name@example.dk."""
    (message,) = [
        m
        for m in smtp_server.messages
        if m["To"].addresses[0].addr_spec == f"{name}@example.dk"
    ]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    return html, text


def _hrefs(html: str) -> list[str]:
    return [
        h.replace("&amp;", "&") for h in re.findall(r'<a\b[^>]*href="([^"]+)"', html)
    ]


def test_a_consenting_member_gets_tracked_links_a_pixel_and_a_hidden_honeypot(
    app, db, smtp_server
):
    club = _club(db, tracking_consent_required=True)
    campaign, members = _send(app, db, club, {"anna": True})
    html, text = _mail(smtp_server, "anna")
    row = send_log(db, campaign, members["anna"])
    assert row.tracked

    links = links_of(db, campaign)
    honeypot, stored = links[0], links[1:]
    assert honeypot.honeypot and honeypot.position == 0
    assert [link.url for link in stored] == TRACKED_URLS
    assert [link.tag for link in stored] == [None, "book", "talk"]
    assert [link.label for link in stored] == ["Se programmet", "En bog", "Foredrag"]
    # Every tracked link is a click URL naming this member's copy; excluded and
    # mailto: links stay as the editor wrote them.
    hrefs = _hrefs(html)
    for url in TRACKED_URLS:
        assert url not in hrefs and url not in text
    for url in PLAIN_URLS:
        assert url in hrefs
    clicks = [signer().read_click(path[3:]) for path in CLICK_URL.findall(html)]
    assert {link_id for link_id, _ in clicks} == {link.id for link in links}
    assert {send_id for _, send_id in clicks} == {row.id}
    assert len(CLICK_URL.findall(text)) == 3  # the text part: no honeypot
    (pixel,) = PIXEL_URL.findall(html)
    assert signer().read_open(pixel[3:-4]) == (campaign.id, row.id)
    # The honeypot is invisible to people and hidden from screen readers.
    anchor = re.search(r'<a href="[^"]*"[^>]*aria-hidden="true"[^>]*></a>', html)
    assert anchor and "display:none" in anchor.group(0)
    token = CLICK_URL.search(anchor.group(0)).group(1)[3:]
    assert signer().read_click(token) == (honeypot.id, row.id)


def test_the_link_in_the_mail_leads_to_its_page_and_counts_for_the_member(
    app, db, smtp_server, client
):
    club = _club(db)
    campaign, members = _send(app, db, club, {"anna": True})
    html, _text = _mail(smtp_server, "anna")
    book_link = next(link for link in links_of(db, campaign) if link.tag == "book")
    book = next(
        path
        for path in CLICK_URL.findall(html)
        if signer().read_click(path[3:])[0] == book_link.id
    )
    response = client.get(book, headers={"User-Agent": BROWSER})
    assert response.headers["Location"] == "https://b.example/bog?id=1&s=2"
    flush()
    last = events(db, campaign)[-1]
    assert last.kind is EventKind.CLICK
    assert last.send_id == send_log(db, campaign, members["anna"]).id


def test_without_consent_a_member_gets_no_pixel_and_no_personal_token(
    app, db, smtp_server
):
    club = _club(db, tracking_consent_required=True)
    campaign, members = _send(app, db, club, {"anna": True, "bo": False})
    html, text = _mail(smtp_server, "bo")

    assert not send_log(db, campaign, members["bo"]).tracked
    assert "/c/" not in html + text and "/o/" not in html
    assert not PIXEL_URL.search(html)
    for url in TRACKED_URLS + PLAIN_URLS:
        assert url in _hrefs(html)
    assert 'aria-hidden="true" tabindex="-1"' not in html  # no honeypot either


def test_anonymous_clubs_send_the_same_links_to_everybody_naming_nobody(
    app, db, smtp_server
):
    club = _club(
        db, tracking_consent_required=False, tracking_mode=TrackingMode.ANONYMOUS
    )
    campaign, _members = _send(app, db, club, {"anna": False, "bo": True})
    anna, bo = _mail(smtp_server, "anna")[0], _mail(smtp_server, "bo")[0]

    assert CLICK_URL.findall(anna) == CLICK_URL.findall(bo) != []
    assert PIXEL_URL.findall(anna) == PIXEL_URL.findall(bo) != []
    for path in CLICK_URL.findall(anna):
        assert signer().read_click(path[3:])[1] is None
    (pixel,) = PIXEL_URL.findall(anna)
    assert signer().read_open(pixel[3:-4]) == (campaign.id, None)


def test_without_required_consent_individual_clubs_track_every_member(
    app, db, smtp_server
):
    club = _club(db, tracking_consent_required=False)
    campaign, members = _send(app, db, club, {"bo": False})
    html, _text = _mail(smtp_server, "bo")
    row = send_log(db, campaign, members["bo"])
    assert row.tracked
    assert {signer().read_click(p[3:])[1] for p in CLICK_URL.findall(html)} == {row.id}


def test_clubs_that_track_nothing_send_plain_mails_and_store_no_links(
    app, db, smtp_server
):
    club = _club(db, tracking_consent_required=False, tracking_mode=TrackingMode.OFF)
    campaign, members = _send(app, db, club, {"anna": True})
    html, text = _mail(smtp_server, "anna")
    assert not send_log(db, campaign, members["anna"]).tracked
    assert links_of(db, campaign) == []
    assert "/c/" not in html + text and not PIXEL_URL.search(html)
    for url in TRACKED_URLS:
        assert url in _hrefs(html)


def test_the_web_version_and_test_mails_are_never_tracked(app, db, smtp_server, client):
    from campaigns import compose
    from klubpost.security import sign

    club = _club(db, tracking_consent_required=False)
    campaign, _members = _send(app, db, club, {"anna": True})
    page = client.get(f"/web/{sign('web', campaign.id)}").get_data(as_text=True)
    assert "/c/" not in page and "/o/" not in page
    for url in TRACKED_URLS:
        assert url in _hrefs(page)

    smtp_server.received.clear()
    compose.send_test(db.session, campaign, "redaktion@example.dk")
    (message,) = smtp_server.messages
    html = message.get_body(("html",)).get_content()
    assert "/c/" not in html and not PIXEL_URL.search(html)


def test_links_that_moved_after_sending_started_stay_plain_never_go_elsewhere(
    app, db, smtp_server
):
    from sqlalchemy.orm.attributes import flag_modified

    club = _club(db, tracking_consent_required=False)
    add_member(db, club, "anna", tracking=True)
    campaign = make_tracked_campaign(db, club)
    start(db, campaign)
    # The content changes under the running send (say an event it shows was
    # edited): a new link now comes first and every other one moves down.
    first = {"type": "button", "label": "Ny", "url": "https://b.example/ny"}
    campaign.blocks = [first, *campaign.blocks]
    flag_modified(campaign, "blocks")
    db.session.commit()
    sending.Sender(app, connections=1).run()

    html, _text = _mail(smtp_server, "anna")
    stored = {link.id: link for link in links_of(db, campaign)}
    anchors = re.findall(r'<a\b[^>]*href="([^"]+)"[^>]*>(.*?)</a>', html, re.S)
    assert ("https://b.example/ny", "Ny") in [
        (href, re.sub(r"<[^>]+>", "", text).strip()) for href, text in anchors
    ]  # the new link: plain
    for href, text in anchors:
        if match := CLICK_URL.match(href.replace("&amp;", "&")):
            link_id, _send = signer().read_click(match.group(1)[3:])
            link = stored[link_id]
            # A tracked link still leads where its text says, or it is the
            # invisible honeypot.
            label = re.sub(r"<[^>]+>", "", text).strip()
            assert link.label == label or (link.honeypot and not label)


def test_a_campaign_that_cannot_start_is_a_draft_again_and_others_start(
    app, db, smtp_server, monkeypatch
):
    from tracking import mail as tracking_mail

    club = _club(db)
    good = make_tracked_campaign(db, club)
    bad = make_tracked_campaign(db, club, subject="Kan ikke starte")
    store = tracking_mail.store_links

    def failing(session, campaign_id, *args):
        if campaign_id == bad.id:  # e.g. the database refuses one of its links
            raise RuntimeError("refused")
        return store(session, campaign_id, *args)

    monkeypatch.setattr(tracking_mail, "store_links", failing)
    now = sending.utcnow()
    for campaign in (bad, good):
        sending.schedule(campaign, sending.ScheduleMode.NOW, now=now)
    db.session.commit()
    started = sending.start_due(db.session, now=now)
    db.session.expire_all()
    assert started == [good.id]
    assert bad.status.value == "draft" and good.status.value == "sending"
    assert len(links_of(db, good)) > 1 and links_of(db, bad) == []


def test_links_too_long_or_unusable_for_a_redirect_stay_plain():
    from campaigns.rendering import LinkInfo
    from tracking.mail import trackable

    assert trackable(LinkInfo("ok", "https://b.example/x"))
    assert not trackable(LinkInfo("long", "https://b.example/" + "x" * 2000))
    assert not trackable(LinkInfo("bad host", "https://www..b.example/"))
    assert not trackable(LinkInfo("bad port", "https://b.example:99999/"))
