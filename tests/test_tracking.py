"""Click redirects, the open pixel and their tokens, through the real endpoints."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, func, select

from conftest import make_club, make_library
from klubpost.security import InvalidToken, sign
from tracking.models import EventKind, TrackEvent
from tracking.public import PIXEL
from tracking.tokens import TokenSigner
from tracking_kit import (
    BROWSER,
    add_member,
    events,
    flush,
    links_of,
    make_tracked_campaign,
    send_log,
    signer,
    start,
)

CONFIG = {"SECRET_KEY": "test-secret"}


@pytest.fixture
def app_config(app_config):
    # Tests write hits with flush(); the background thread waits for an hour.
    app_config["TRACKING_FLUSH_SECONDS"] = 3600
    return app_config


@pytest.fixture
def club(db):
    return make_club(db, make_library(db))


@pytest.fixture
def sent(db, club):
    """A started campaign, a member who consented to tracking, the stored links."""
    member = add_member(db, club, "anna", tracking=True)
    campaign = make_tracked_campaign(db, club)
    start(db, campaign)
    links = links_of(db, campaign)
    row = send_log(db, campaign, member)
    return campaign, row, links


def _flip(token: str, at: int) -> str:
    swap = "A" if token[at] != "A" else "B"
    return token[:at] + swap + token[at + 1 :]


# ----------------------------------------------------------------- tokens


def test_tokens_carry_ids_only_and_refuse_any_change(app):
    tokens = TokenSigner(CONFIG)
    token = tokens.click(42, 7)
    assert tokens.read_click(token) == (42, 7)
    assert tokens.read_click(tokens.click(42, None)) == (42, None)
    assert tokens.read_open(tokens.open(3, 9)) == (3, 9)
    assert "@" not in token and "http" not in token
    for at in (0, len(token) // 2, len(token) - 1):
        with pytest.raises(InvalidToken):
            tokens.read_click(_flip(token, at))
    with pytest.raises(InvalidToken):  # an open token is no click token
        tokens.read_click(tokens.open(42, 7))
    with pytest.raises(InvalidToken):  # nor is any other signed link of the site
        tokens.read_click(sign("manage", 42, 7))
    with pytest.raises(InvalidToken):
        tokens.read_click("x" * 500)


def test_keys_rotate_without_breaking_links_already_sent():
    old = TokenSigner({**CONFIG, "TRACKING_SECRET_KEYS": ["old-key"]})
    rotated = TokenSigner({**CONFIG, "TRACKING_SECRET_KEYS": ["old-key", "new-key"]})
    only_new = TokenSigner({**CONFIG, "TRACKING_SECRET_KEYS": ["new-key"]})
    sent_before = old.click(5, 6)

    assert rotated.read_click(sent_before) == (5, 6)  # the old key still verifies
    assert only_new.read_click(rotated.click(5, 6)) == (5, 6)  # the newest signs
    with pytest.raises(InvalidToken):  # a key taken out of the list is gone
        only_new.read_click(sent_before)
    with pytest.raises(InvalidToken):  # the key derived from SECRET_KEY is another
        TokenSigner(CONFIG).read_click(only_new.click(5, 6))
    # Rotating SECRET_KEY keeps the derived tracking keys of the older ones.
    derived = TokenSigner({"SECRET_KEY": "k1"}).click(5, 6)
    after = TokenSigner({"SECRET_KEY": "k2", "SECRET_KEY_FALLBACKS": ["k1"]})
    assert after.read_click(derived) == (5, 6)


def test_tokens_in_itsdangerous_general_format_read_the_same():
    """Our tokens are itsdangerous' URL-safe format: one that library made with
    the same key and salt reads the same (even with JSON spacing), and a validly
    signed token carrying anything but two ids is refused."""
    import json

    from itsdangerous import Signer, URLSafeSerializer
    from itsdangerous.encoding import base64_encode

    from tracking.tokens import tracking_keys

    class SpacedJSON:
        dumps = staticmethod(json.dumps)  # "[42, 7]"
        loads = staticmethod(json.loads)

    keys = list(tracking_keys(CONFIG))
    salt = "klubpost.track.click"
    general = URLSafeSerializer(keys, salt=salt)
    tokens = TokenSigner(CONFIG)
    assert general.dumps([42, 7]) == tokens.click(42, 7)  # the same bytes
    spaced = URLSafeSerializer(keys, salt=salt, serializer=SpacedJSON).dumps([42, 7])
    assert spaced != tokens.click(42, 7)
    assert tokens.read_click(spaced) == (42, 7)
    odd = ([42], [42, 7, 1], ["42", 7], [0, 7], [-1, 7], [True, 7], [2**63, 7], {})
    for payload in odd:
        with pytest.raises(InvalidToken):
            tokens.read_click(general.dumps(payload))
    signer = Signer(keys, salt=salt)
    for raw in (b"[042,7]", b"[42,7", b"\xff"):  # signed, but no JSON ids
        with pytest.raises(InvalidToken):
            tokens.read_click(signer.sign(base64_encode(raw)).decode())
    stranger = URLSafeSerializer(["stranger"], salt=salt)
    with pytest.raises(InvalidToken):
        tokens.read_click(stranger.dumps([42, 7]))


# ----------------------------------------------------------------- click


def test_a_click_redirects_to_exactly_the_stored_url_and_is_recorded(client, db, sent):
    campaign, row, links = sent
    link = next(link for link in links if link.tag == "book")
    response = client.get(
        f"/c/{signer().click(link.id, row.id)}", headers={"User-Agent": BROWSER}
    )

    assert response.status_code == 302
    assert response.headers["Location"] == "https://b.example/bog?id=1&s=2"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    assert flush() == 1
    (event,) = events(db, campaign)
    assert (event.kind, event.link_id, event.send_id) == (
        EventKind.CLICK,
        link.id,
        row.id,
    )
    assert (event.human, event.reason) == (True, "human")


def test_an_unicode_url_is_redirected_to_as_a_valid_header(client, db, club):
    add_member(db, club, "anna", tracking=True)
    campaign = make_tracked_campaign(
        db,
        club,
        blocks=[{"type": "button", "label": "Læs", "url": "https://b.example/læs"}],
    )
    start(db, campaign)
    link = links_of(db, campaign)[1]
    response = client.get(f"/c/{signer().click(link.id, None)}")
    assert response.headers["Location"] == "https://b.example/l%C3%A6s"


def test_a_stored_link_that_cannot_be_a_redirect_is_a_clear_404(client, db, sent):
    campaign, row, links = sent
    link = next(link for link in links if not link.honeypot)
    link.url = "https://www..b.example/"  # stored before links were checked
    db.session.commit()
    response = client.get(f"/c/{signer().click(link.id, row.id)}")
    assert response.status_code == 404
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/c///evil.example",
        "/c/%2F%2Fevil.example",
        "/c/javascript:alert(1)",
        "/c/https://evil.example/",
        "/c/",
        "/c/WzEsMl0",
    ],
)
def test_made_up_click_urls_get_a_page_never_a_redirect(client, db, sent, path):
    response = client.get(path, headers={"User-Agent": BROWSER})
    assert 400 <= response.status_code < 500
    assert "Location" not in response.headers
    flush()
    assert events(db) == []


def test_tampered_forged_and_foreign_click_tokens_get_a_clear_page(
    client, app, db, sent
):
    _campaign, row, links = sent
    link = links[1]
    good = signer().click(link.id, row.id)
    forged = TokenSigner({"SECRET_KEY": "someone-else"}).click(link.id, row.id)
    unknown = signer().click(link.id + 1000, row.id)  # signed, but no such link
    for token in (_flip(good, 3), _flip(good, len(good) - 2), forged, unknown):
        response = client.get(f"/c/{token}", headers={"User-Agent": BROWSER})
        assert response.status_code == 404
        assert "Location" not in response.headers
        page = response.get_data(as_text=True)
        assert "This link does not work" in page and "<html" in page
    danish = client.get(
        f"/c/{forged}", headers={"User-Agent": BROWSER, "Accept-Language": "da"}
    )
    assert "link virker ikke" in danish.get_data(as_text=True)
    flush()
    assert events(db) == []


def test_a_click_of_a_deleted_campaign_is_a_page_not_a_redirect(client, db, sent):
    campaign, row, links = sent
    token = signer().click(links[1].id, row.id)
    db.session.delete(campaign)
    db.session.commit()
    assert client.get(f"/c/{token}").status_code == 404


# ----------------------------------------------------------------- pixel


def test_the_pixel_is_always_a_gif_and_only_good_tokens_count(client, db, sent):
    campaign, row, _links = sent
    good = signer().open(campaign.id, row.id)
    for path in (f"/o/{good}.gif", f"/o/{_flip(good, 4)}.gif", "/o/nonsense.gif"):
        response = client.get(path, headers={"User-Agent": BROWSER})
        assert response.status_code == 200
        assert response.data == PIXEL and len(PIXEL) == 43
        assert response.headers["Content-Type"] == "image/gif"
        assert "no-store" in response.headers["Cache-Control"]
    assert flush() == 1
    (event,) = events(db, campaign)
    assert (event.kind, event.send_id, event.link_id) == (EventKind.OPEN, row.id, None)
    assert event.human


# ----------------------------------------------------------------- verdicts at hit time


def test_proxies_heads_scanners_and_the_honeypot_are_machines(client, db, sent):
    campaign, row, links = sent
    honeypot, link = links[0], links[1]
    assert honeypot.honeypot and honeypot.position == 0
    pixel = f"/o/{signer().open(campaign.id, row.id)}.gif"
    click = f"/c/{signer().click(link.id, row.id)}"
    hits = [
        # Apple Mail Privacy Protection: a bare agent from Apple's network.
        (client.get, pixel, {"User-Agent": "Mozilla/5.0"}, "17.58.101.7"),
        (
            client.get,
            pixel,
            {"User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) GoogleImageProxy"},
            "66.249.84.1",
        ),
        (client.head, pixel, {"User-Agent": BROWSER}, "192.0.2.1"),
        (client.head, click, {"User-Agent": BROWSER}, "192.0.2.1"),
        (
            client.get,
            click,
            {"User-Agent": "Mozilla/5.0 (compatible; MSOffice 16; SafeLinks)"},
            "40.94.1.1",
        ),
        (
            client.get,
            f"/c/{signer().click(honeypot.id, row.id)}",
            {"User-Agent": BROWSER},
            "192.0.2.1",
        ),
    ]
    for method, path, headers, ip in hits:
        response = method(path, headers=headers, environ_base={"REMOTE_ADDR": ip})
        assert response.status_code in (200, 302)
    flush()
    assert [(e.human, e.reason) for e in events(db, campaign)] == [
        (False, "apple_privacy_proxy"),
        (False, "google_image_proxy"),
        (False, "head_request"),
        (False, "head_request"),
        (False, "known_scanner"),
        (False, "honeypot_link"),
    ]


# ----------------------------------------------------------------- recording


def _unreachable(monkeypatch, app):
    """Point the recorder (and link look-ups) at a database nobody answers."""
    recorder = app.extensions["klubpost_tracking"].recorder
    engine = recorder.engine
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    monkeypatch.setattr(recorder, "engine", dead)
    return recorder, engine


def test_hits_are_answered_while_the_database_is_unreachable(
    monkeypatch, client, app, db, sent
):
    campaign, row, links = sent
    known, unseen = links[1], links[2]
    click = f"/c/{signer().click(known.id, row.id)}"
    assert client.get(click).status_code == 302  # the link is now known here
    flush()
    recorder, engine = _unreachable(monkeypatch, app)

    response = client.get(click, headers={"User-Agent": BROWSER})
    assert response.status_code == 302
    assert response.headers["Location"] == known.url
    pixel = client.get(f"/o/{signer().open(campaign.id, row.id)}.gif")
    assert pixel.status_code == 200 and pixel.data == PIXEL
    # A link this process has not seen yet can't be looked up: a page, not a 500.
    page = client.get(f"/c/{signer().click(unseen.id, row.id)}")
    assert page.status_code == 503 and "Location" not in page.headers
    with pytest.raises(Exception, match="127.0.0.1"):
        recorder.flush()
    assert recorder.pending() == 2

    monkeypatch.setattr(recorder, "engine", engine)  # the database is back
    assert recorder.flush() == 2
    assert [e.kind for e in events(db, campaign)] == [
        EventKind.CLICK,
        EventKind.CLICK,
        EventKind.OPEN,
    ]


def test_the_background_thread_writes_hits_without_being_asked(client, app, db, sent):
    campaign, row, links = sent
    app.extensions["klubpost_tracking"].recorder.interval = 0.05
    for link in links[1:]:
        client.get(f"/c/{signer().click(link.id, row.id)}")
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline and count < 3:
        time.sleep(0.05)
        db.session.rollback()
        count = db.session.scalar(select(func.count()).select_from(TrackEvent))
    assert count == 3


def test_hits_of_a_campaign_deleted_meanwhile_are_dropped_not_retried(
    client, app, db, club, sent
):
    campaign, row, _links = sent
    other = make_tracked_campaign(db, club)
    client.get(f"/o/{signer().open(campaign.id, row.id)}.gif")
    client.get(f"/o/{signer().open(other.id, None)}.gif")
    db.session.delete(campaign)
    db.session.commit()
    recorder = app.extensions["klubpost_tracking"].recorder
    assert recorder.flush() == 1 and recorder.pending() == 0
    assert [e.campaign_id for e in events(db)] == [other.id]


def test_a_full_buffer_drops_new_hits_instead_of_growing(client, app, db, sent):
    campaign, row, _links = sent
    recorder = app.extensions["klubpost_tracking"].recorder
    recorder.max_buffer = 2
    for _ in range(3):
        pixel = client.get(f"/o/{signer().open(campaign.id, row.id)}.gif")
        assert pixel.status_code == 200
    assert (recorder.pending(), recorder.dropped) == (2, 1)
    assert flush() == 2


def test_sqlite_hits_commit_without_a_disk_flush_and_leave_the_connection_as_is(
    tmp_path,
):
    import sqlite3

    from sqlalchemy.exc import IntegrityError

    from tracking.recorder import _insert_sqlite

    connection = sqlite3.connect(tmp_path / "hits.db")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    connection.execute("CREATE TABLE hit (parent_id INTEGER REFERENCES parent(id))")
    connection.execute("INSERT INTO parent VALUES (1)")
    connection.commit()
    sql = "INSERT INTO hit VALUES (?)"

    _insert_sqlite(connection, sql, [(1,), (1,)])
    assert connection.execute("SELECT count(*) FROM hit").fetchone() == (2,)
    assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL

    with pytest.raises(IntegrityError):  # as the recorder expects it
        _insert_sqlite(connection, sql, [(1,), (99,)])
    assert connection.execute("SELECT count(*) FROM hit").fetchone() == (2,)
    assert connection.execute("PRAGMA synchronous").fetchone() == (2,)
    assert not connection.in_transaction
