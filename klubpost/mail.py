"""Mail transports (the dev outbox and SMTP) and the queue of single mails.

Confirmation mails and test sends go through `queue_mail`: each one is a row with
a status and a retry, tried once at once and then by the scheduler until it goes.
Whoever sends a row claims it first (`claim_mail`), so it goes out once even
when the immediate try and the scheduler reach it together.
"""

from __future__ import annotations

import enum
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app
from sqlalchemy import (
    ForeignKey,
    LargeBinary,
    Row,
    String,
    Text,
    delete,
    inspect,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from klubpost.db import db, str_enum, utcnow

MAX_ATTEMPTS = 8
# How long a sender holds a queued mail it claimed (claim_mail); one SMTP
# delivery takes seconds, so a claim this old belongs to a sender that died.
CLAIM_LEASE = timedelta(minutes=5)


class TemporaryFailure(Exception):
    """The server said try later (4xx), or could not be reached."""


class PermanentFailure(Exception):
    """The server refused the message for good (5xx)."""


class OutboxMessage(db.Model):
    """A mail caught by the built-in development outbox instead of being sent."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int | None] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE"), index=True
    )
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(998), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailStatus(enum.StrEnum):
    """Where a queued single mail stands."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class QueuedMail(db.Model):
    """One single mail (confirmation, test send) waiting for or done with sending."""

    __tablename__ = "queued_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    library_id: Mapped[int | None] = mapped_column(
        ForeignKey("library.id", ondelete="CASCADE"), index=True
    )
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[MailStatus] = mapped_column(
        str_enum(MailStatus, "mail_status"), default=MailStatus.QUEUED, index=True
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


@dataclass
class OutboxTransport:
    """Keeps every mail in the database, where staff can read it in the web UI."""

    session: Session
    library_id: int | None = None

    def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Store the message in the outbox."""
        subject = _header(data, "Subject")
        self.session.add(
            OutboxMessage(
                library_id=self.library_id,
                sender=sender,
                recipients=", ".join(recipients),
                subject=subject[:998],
                raw=data,
            )
        )
        self.session.flush()


@dataclass
class SmtpTransport:
    """Sends over SMTP (smtp:// with optional STARTTLS, or smtps://)."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    def connect(self) -> smtplib.SMTP:
        """Open an authenticated connection."""
        try:
            if self.implicit_tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    conn.starttls(context=ssl.create_default_context())
            if self.username:
                conn.login(self.username, self.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"cannot reach {self.host}:{self.port}: {exc}"
            ) from exc
        return conn

    def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Send one message on a fresh connection."""
        conn = self.connect()
        try:
            conn.sendmail(sender, recipients, data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _failure(code, text) from exc
        except smtplib.SMTPResponseException as exc:
            raise _failure(exc.smtp_code, exc.smtp_error) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(str(exc)) from exc
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()


def _failure(code: int, text: bytes | str) -> Exception:
    message = (
        f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
    )
    return PermanentFailure(message) if 500 <= code < 600 else TemporaryFailure(message)


def transport_from_url(url: str, session: Session, library_id: int | None = None):
    """Build the transport MAIL_URL names."""
    parts = urlsplit(url)
    if parts.scheme == "outbox":
        return OutboxTransport(session, library_id)
    if parts.scheme in ("smtp", "smtps"):
        options = parse_qs(parts.query)
        return SmtpTransport(
            host=parts.hostname or "localhost",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            implicit_tls=parts.scheme == "smtps",
            starttls=options.get("starttls", ["0"])[0] in ("1", "true", "yes"),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
    raise ValueError(f"MAIL_URL scheme {parts.scheme!r} is not supported")


def _header(data: bytes, name: str) -> str:
    from email import message_from_bytes

    return str(message_from_bytes(data, policy=policy.default).get(name, ""))


def new_message(sender: str, to: str, subject: str, domain: str) -> EmailMessage:
    """An EmailMessage with the headers every mail needs (Message-ID, Date)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=domain)
    return msg


def queue_mail(
    session: Session, msg: EmailMessage, library_id: int | None
) -> QueuedMail:
    """Queue a single mail; it is sent by `deliver_queued`."""
    envelope_from = parseaddr(str(msg["From"]))[1]
    recipient = parseaddr(str(msg["To"]))[1]
    mail = QueuedMail(
        library_id=library_id,
        sender=envelope_from,
        recipient=recipient,
        # SMTP wants CRLF line ends, and smtplib does not fix them in bytes.
        raw=msg.as_bytes(policy=policy.SMTP),
    )
    session.add(mail)
    session.flush()
    return mail


def deliver_queued(
    session: Session, now: datetime | None = None, limit: int = 100
) -> int:
    """Try every queued mail that is due; return how many went out. Commits."""
    now = now or utcnow()
    due = session.scalars(
        select(QueuedMail)
        .where(
            QueuedMail.status == MailStatus.QUEUED, QueuedMail.next_attempt_at <= now
        )
        .order_by(QueuedMail.id)
        .limit(limit)
    ).all()
    sent = 0
    for mail in due:
        sent += deliver_one(session, mail, now)
        session.commit()
    return sent


def claim_mail(session: Session, mail_id: int, now: datetime) -> Row | None:
    """Take a due queued mail for sending: what to send (and the attempt's
    number), or None if another sender has it, it went, or it is gone.

    One conditional UPDATE: of two senders trying the same row (the immediate
    try after queueing and the scheduler, or two schedulers), only one changes
    it. The claim moves the next attempt a lease ahead, so a sender that dies
    mid-send leaves a mail that is tried again once the lease runs out.
    """
    return session.execute(
        update(QueuedMail)
        .where(
            QueuedMail.id == mail_id,
            QueuedMail.status == MailStatus.QUEUED,
            QueuedMail.next_attempt_at <= now,
        )
        .values(
            attempts=QueuedMail.attempts + 1,
            next_attempt_at=now + CLAIM_LEASE,
        )
        .returning(
            QueuedMail.attempts,
            QueuedMail.library_id,
            QueuedMail.sender,
            QueuedMail.recipient,
            QueuedMail.raw,
        )
        .execution_options(synchronize_session=False)
    ).first()


def deliver_one(
    session: Session, mail: QueuedMail, now: datetime | None = None
) -> bool:
    """Send one queued mail if no one else is sending it, recording the result.

    The claim is committed before the mail goes, so every other sender sees it;
    the result is left for the caller to commit. The result is written by id:
    if the mail was deleted meanwhile (its recipient erased), nothing is left
    to update.
    """
    now = now or utcnow()
    # By identity only: reading the (possibly expired) row could fail if it was
    # deleted meanwhile; the claim reads what it needs.
    (mail_id,) = inspect(mail).identity
    claimed = claim_mail(session, mail_id, now)
    session.commit()
    if claimed is None:
        return False
    attempt = claimed.attempts
    transport = transport_from_url(
        current_app.config["MAIL_URL"], session, claimed.library_id
    )
    result: dict[str, object]
    try:
        transport.send(claimed.sender, [claimed.recipient], claimed.raw)
    except TemporaryFailure as exc:
        result = {"last_error": str(exc)[:2000]}
        if attempt >= MAX_ATTEMPTS:
            result["status"] = MailStatus.FAILED
        else:
            result["next_attempt_at"] = now + timedelta(minutes=2**attempt)
    except PermanentFailure as exc:
        result = {"last_error": str(exc)[:2000], "status": MailStatus.FAILED}
    else:
        result = {"status": MailStatus.SENT, "sent_at": now}
    session.execute(
        update(QueuedMail)
        .where(QueuedMail.id == mail_id)
        .values(**result)
        .execution_options(synchronize_session=False)
    )
    if mail in session:
        session.expire(mail)
    return result.get("status") == MailStatus.SENT


def purge_done_mail(session: Session, now: datetime | None = None) -> int:
    """Delete single mails sent or given up on before the retention period. Commits.

    A confirmation mail holds the person's name and a working link; once it
    went (or never will), nothing needs it for long.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["MAIL_RETENTION_DAYS"])
    deleted = session.execute(
        delete(QueuedMail)
        .where(
            QueuedMail.status.in_([MailStatus.SENT, MailStatus.FAILED]),
            QueuedMail.created_at < cutoff,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return deleted
