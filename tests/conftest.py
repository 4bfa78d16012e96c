"""Fixtures: an app on a migrated database (SQLite, or PostgreSQL when
TEST_DATABASE_URL is set), a client, a CLI runner, a real SMTP server, factories."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from accounts.models import Library, Role, User
from accounts.services import create_user
from klubpost import create_app
from klubpost.db import Base
from klubpost.db import db as _db
from subscribers.models import Club, Subscriber
from subscribers.services import create_club, create_subscriber

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
PASSWORD = "correct horse battery"


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "migrate", "TESTING": True})
    with app.app_context():
        upgrade()
        _db.engine.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory) -> str:
    """Migrate once per run: an SQLite file to copy, or the PostgreSQL database."""
    if TEST_DATABASE_URL:
        engine = create_engine(
            TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
        _migrate(TEST_DATABASE_URL)
        return TEST_DATABASE_URL
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    _migrate(f"sqlite:///{path}")
    return str(path)


@pytest.fixture
def database_url(database_template, tmp_path) -> Iterator[str]:
    """A clean, migrated database for one test."""
    if not TEST_DATABASE_URL:
        path = tmp_path / "test.sqlite3"
        shutil.copy(database_template, path)
        yield f"sqlite:///{path}"
        return
    yield TEST_DATABASE_URL
    engine = create_engine(
        TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def app_config(database_url, tmp_path) -> dict:
    """The test configuration; tests may change it before `app` is built."""
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret",
        "BASE_URL": "http://klubpost.test",
        "MAIL_URL": "outbox:",
        # A fast hash: scrypt would make every log-in in the suite slow.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        # Small chunks: every sending test also writes its audience in pieces
        # while it sends, as a big club's campaign does.
        "SEND_AUDIENCE_CHUNK": 7,
    }


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    with app.app_context():
        yield app
        # Tracked hits are written by a background thread: let it finish first.
        app.extensions["klubpost_tracking"].close()
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# ----------------------------------------------------------------- a real SMTP server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    """An aiosmtpd server on a free port that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.received: list[tuple[str, list[str], bytes]] = []
        self.port = _free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        # Set by tests: advertise PIPELINING; refuse recipients containing a key
        # with its reply (e.g. {"full": "452 4.2.2 Mailbox full"}).
        self.pipelining = False
        self.refuse: dict[str, str] = {}
        self.sessions = 0
        self.stopped = False
        self.delay = 0.0  # seconds per message: a slow server

    def stop(self) -> None:
        """Shut the server down (once; a test may do it to simulate an outage)."""
        if not self.stopped:
            self.controller.stop()
            self.stopped = True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        self.sessions += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        for key, reply in self.refuse.items():
            if key in address:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return "250 OK"

    @property
    def messages(self) -> list[EmailMessage]:
        """The received mails, parsed as a mail client would."""
        return [
            message_from_bytes(raw, policy=policy.default)
            for _f, _t, raw in self.received
        ]


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.controller.start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_app_config(app_config, smtp_server) -> dict:
    app_config["MAIL_URL"] = f"smtp://127.0.0.1:{smtp_server.port}"
    return app_config


# ----------------------------------------------------------------- factories


def make_library(db, slug: str = "herning", **kw) -> Library:
    library = Library(
        name=kw.pop("name", slug.title() + " Bibliotek"),
        slug=slug,
        domain=kw.pop("domain", f"{slug}.example.dk"),
        language=kw.pop("language", "da"),
        **kw,
    )
    db.session.add(library)
    db.session.commit()
    return library


def make_club(db, library: Library, slug: str = "debat", **kw) -> Club:
    fields = {
        "name": "Her er debat",
        "slug": slug,
        "description": "",
        "language": library.language,
        "from_name": "Debatklubben",
        "from_email": f"{slug}@{library.domain}",
        "reply_to": None,
        "double_opt_in": True,
        "tracking_consent_required": True,
    }
    fields.update(kw)
    club = create_club(db.session, library, **fields)
    db.session.commit()
    return club


def make_user(db, library: Library | None, role: Role = Role.EDITOR, **kw) -> User:
    user = create_user(
        db.session,
        email=kw.pop(
            "email",
            f"{role.value}@{library.slug if library else 'consortium'}.example.dk",
        ),
        name=kw.pop("name", role.value.title()),
        password=PASSWORD,
        role=role,
        library=library,
        **kw,
    )
    db.session.commit()
    return user


def make_subscriber(
    db, library: Library, email: str = "anna@example.dk", **kw
) -> Subscriber:
    subscriber = create_subscriber(db.session, library, email, **kw)
    db.session.commit()
    return subscriber


CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_token(client, url: str = "/login") -> str:
    """A CSRF token for the client's session, read from a page's form."""
    html = client.get(url).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


def submit_form(client, url: str, data: dict, page: str | None = None):
    """POST a web form as a browser does: `data` plus the CSRF token read from
    `page` (default: the form's own URL)."""
    return client.post(
        url, data={**data, "csrf_token": csrf_token(client, page or url)}
    )


def login(client, user: User, password: str = PASSWORD):
    """Log `user` in through the real form."""
    response = client.post(
        "/login",
        data={
            "email": user.email,
            "password": password,
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def outbox_messages(db) -> list[EmailMessage]:
    """Mails caught by the development outbox, parsed."""
    from klubpost.mail import OutboxMessage

    rows = db.session.scalars(
        _db.select(OutboxMessage).order_by(OutboxMessage.id)
    ).all()
    return [message_from_bytes(r.raw, policy=policy.default) for r in rows]


def links_in(message: EmailMessage) -> list[str]:
    """The URLs in a mail's text part."""
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.findall(r"https?://\S+", body)


ARTIFACTS = Path(__file__).parent / "artifacts"


def confirm_from_mail(
    client, message: EmailMessage, base: str = "http://klubpost.test"
):
    """Open the confirmation link of a mail and press its button, as a person does."""
    link = next(url for url in links_in(message) if "/confirm/" in url)
    path = link.removeprefix(base)
    page = client.get(path)
    assert page.status_code == 200
    return client.post(path, data={"csrf_token": csrf_token(client, path)})
