"""How bounces and complaints are handled: read a report, find our copy, act.

1. **Read.** `parse()` turns one message into findings (kind, address, status,
   diagnostic): delivery status notifications per RFC 3464 (multipart/report;
   report-type=delivery-status), complaints per RFC 5965 (ARF,
   report-type=feedback-report; Yahoo, AOL and Microsoft JMRP send these), and the
   many non-standard formats of older mail servers through `flufl.bounce`.
   Out-of-office replies are recognised and ignored.
2. **Find our copy.** Every campaign mail has its own envelope sender
   (VERP, `bounces+<send id>.<mac>@domain`, see campaigns/messages.py), so the
   address a report was sent to names exactly one member's copy. A VERP address
   with a wrong MAC is forged: the whole report is ignored. Without one, the
   original Message-ID quoted in the report is looked up; as a last resort the
   failed address inside the club (named by the quoted List-Id) or inside the
   libraries of the webhook's token.
3. **Act.** `classify()` decides (also for refusals during sending): a permanent
   address problem (5.1.x, 5.2.1, ...) bounces the member at once; temporary
   failures (4.x.x, a full mailbox) are counted and bounce the member after
   BOUNCE_SOFT_LIMIT of them within BOUNCE_SOFT_WINDOW_DAYS; a policy refusal
   (5.7.x: spam filter, authentication, blocklist) is the sender's problem and is
   only shown to staff on the campaign page; a complaint unsubscribes the member
   on the first one. Each report is stored by digest: the same report processed
   twice changes nothing more.

Sources: `klubpost bounces FILE|DIR` (one message, an mbox file, a maildir or a
folder of .eml files), `--imap URL` / `--pop3 URL` (processed messages are deleted,
or moved with ?move=Folder), the scheduler polling BOUNCE_MAILBOX_URL, and the
webhook `POST /api/bounces` (campaigns/webhooks.py).
"""

from __future__ import annotations

import email
import hashlib
import imaplib
import logging
import mailbox
import poplib
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import current_app
from flufl.bounce import all_failures
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.models import Library
from campaigns.messages import verp_send_id
from campaigns.models import (
    BounceEvent,
    BounceKind,
    BounceReport,
    Campaign,
    SendLog,
    SendStatus,
)
from klubpost.db import utcnow
from subscribers.models import Club, Membership, MembershipStatus, Subscriber
from subscribers.services import unsubscribe

log = logging.getLogger("klubpost.bounces")

Kind = BounceKind

# ------------------------------------------------------------------ deciding

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"\b([45]\d\d)\b")
_REPLY_START = re.compile(r"^[45]\d\d\b")
# Without a status code, the words of a refusal that blames the address.
_ADDRESS_GONE = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|recipient not found"
    r"|does(n't| not) (exist|have an? (\S+ )?account)|account (has been )?disabled"
    r"|invalid recipient|no mailbox here",
    re.IGNORECASE,
)
# Status codes that are about our message or our sending, not the address:
# too big (5.2.3, 5.3.4), protocol (5.5.x), content (5.6.x), policy (5.7.x).
_SENDER_PROBLEMS = {"2.3", "3.4"}


def classify(status: str | None, code: int | None = None, text: str = "") -> Kind:
    """Whether a failure blames the address (hard), is temporary, or is policy.

    `status` is an enhanced status code (RFC 3463) such as "5.1.1"; without one
    (or with a generic "x.0.0") the one at the start of `text` or the SMTP reply
    `code` decide. Used for DSNs and for refusals while sending alike.
    """
    found = _STATUS.search(status or "")
    if found is None or found.group(0).endswith(".0.0"):
        found = _STATUS.match(text.lstrip(" -:")) or found
    if found is not None and not found.group(0).endswith(".0.0"):
        return _by_status(*found.groups())
    temporary = code is not None and code < 500
    if temporary or (found is not None and found.group(1) == "4"):
        return Kind.SOFT
    if _ADDRESS_GONE.search(text):
        return Kind.HARD
    return _by_reply_code(code) if code is not None else Kind.HARD


def _by_status(klass: str, subject: str, detail: str) -> Kind:
    if klass == "4":
        return Kind.SOFT
    if subject == "2" and detail == "2":  # mailbox full: it may empty again
        return Kind.SOFT
    if subject in ("5", "6", "7") or f"{subject}.{detail}" in _SENDER_PROBLEMS:
        return Kind.POLICY
    return Kind.HARD


def _by_reply_code(code: int) -> Kind:
    if code in (550, 551, 553):  # no such mailbox / not local / bad name
        return Kind.HARD
    if code == 552:  # storage exceeded
        return Kind.SOFT
    # 554 and friends without a status: usually a blocklist or content filter.
    return Kind.POLICY


# ------------------------------------------------------------------ reading


@dataclass
class Finding:
    """One address a report is about."""

    kind: Kind
    email: str
    status: str = ""
    diagnostic: str = ""
    # False for a delay warning: the mail is still on its way, the copy stays sent.
    final: bool = True


@dataclass
class Report:
    """What one message says, and which copy of ours it names."""

    digest: str
    findings: list[Finding] = field(default_factory=list)
    send_id: int | None = None  # from a VERP address with a good MAC
    forged: bool = False  # a VERP address with a bad MAC
    auto_reply: bool = False
    message_ids: list[str] = field(default_factory=list)
    list_id: str | None = None


_VERP = re.compile(rb"bounces\+\d+\.[0-9a-f]{10}@", re.IGNORECASE)
_QUOTED_MESSAGE_ID = re.compile(r"(?im)^message-id:\s*(<[^<>\s]+>)")
_COMPLAINT_TYPES = {"abuse", "fraud", "other"}
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?reply|autosvar"
    r"|automatisch antwoord|afwezig|fraværende|abwesenheit|vacation)",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)


def parse(raw: bytes, secrets: list[bytes]) -> Report:
    """The findings of one message (a DSN, an ARF complaint, or another bounce)."""
    msg = email.message_from_bytes(raw)
    report = Report(digest=report_digest(msg, raw))
    _find_verp(report, raw, secrets)
    originals = _original_headers(msg)
    report.message_ids = _message_ids(msg, raw, originals)
    lists = [_header(h, "List-Id") for h in originals]
    report.list_id = next((value for value in lists if value), None)
    if _report_type(msg) == "feedback-report":
        report.findings = _complaints(msg, originals)
    elif _parts(msg, "message/delivery-status"):
        report.findings = _dsn_findings(msg)
    elif _is_auto_reply(msg):
        report.auto_reply = True
    else:
        report.findings = _other_findings(msg)
    return report


def report_digest(msg: Message, raw: bytes) -> str:
    """What makes a report the same report: its Message-ID and addressee (the
    VERP address; copies fetched twice may differ in trace headers), else its
    bytes."""
    message_id = _header(msg, "Message-ID")
    if not message_id:
        return hashlib.sha256(raw).hexdigest()
    key = f"id:{message_id}\nto:{_header(msg, 'To')}"
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _find_verp(report: Report, raw: bytes, secrets: list[bytes]) -> None:
    """The send a VERP address in the message names, checking its MAC."""
    found = {m.group(0).decode("ascii").lower() for m in _VERP.finditer(raw)}
    valid = set()
    for address in found:
        for secret in secrets:
            send_id = verp_send_id(address, secret)
            if send_id is not None:
                valid.add(send_id)
                break
    if found and not valid:
        report.forged = True
    if len(valid) == 1:  # two different sends in one report: trust neither
        report.send_id = valid.pop()


def _report_type(msg: Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return (msg.get_param("report-type") or "").lower()  # type: ignore[union-attr]


def _parts(msg: Message, content_type: str) -> list[Message]:
    return [part for part in msg.walk() if part.get_content_type() == content_type]


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = part.get_payload(decode=True) or b""
    blocks = re.split(r"\r?\n\s*\r?\n", text.decode("utf-8", "replace"))
    return [HeaderParser().parsestr(block) for block in blocks if block.strip()]


def _original_headers(msg: Message) -> list[Message]:
    """The headers of the original message quoted in a report, if any."""
    found = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                found.append(payload[0])
        elif kind == "text/rfc822-headers":
            text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
            found.append(HeaderParser().parsestr(text))
    return found


def _message_ids(msg: Message, raw: bytes, originals: list[Message]) -> list[str]:
    ids = [_header(h, "Message-ID") for h in originals if h["Message-ID"]]
    # Non-standard bounces quote the original headers as plain text.
    body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1]
    ids += _QUOTED_MESSAGE_ID.findall(body.decode("utf-8", "replace"))
    own = _header(msg, "Message-ID")
    return list(dict.fromkeys(i for i in ids if i != own))


def _header(msg: Message, name: str) -> str:
    """A header as text (a header with raw 8-bit bytes is an object, not a str)."""
    value = msg.get(name)
    return str(value).strip() if value is not None else ""


def _decoded(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset nobody knows
        return data.decode("utf-8", "replace")


def _clean(value: Any, limit: int = 500) -> str:
    return " ".join(str(value or "").split())[:limit]


def _address(value: str | None) -> str:
    """The address of a DSN/ARF address field ("rfc822; a@b" or "<a@b>")."""
    value = _clean(value, 320)
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").strip()


def _dsn_findings(msg: Message) -> list[Finding]:
    findings = []
    for part in _parts(msg, "message/delivery-status"):
        for block in _field_blocks(part)[1:]:  # the first block is per message
            finding = _dsn_recipient(block)
            if finding is not None:
                findings.append(finding)
    return findings


def _dsn_recipient(block: Message) -> Finding | None:
    action = _clean(block.get("Action")).lower()
    if not action.startswith(("failed", "delayed", "error")):
        return None  # delivered, relayed, expanded
    address = _address(block.get("Original-Recipient")) or _address(
        block.get("Final-Recipient")
    )
    diagnostic = _clean(block.get("Diagnostic-Code"))
    if diagnostic.lower().startswith(("smtp;", "x-")) and ";" in diagnostic:
        diagnostic = diagnostic.split(";", 1)[1].strip()
    status = _clean(block.get("Status"), 16)
    delayed = action.startswith("delayed")
    reply = _REPLY_CODE.match(diagnostic)
    kind = classify(
        status or ("4.0.0" if delayed else "5.0.0"),
        int(reply.group(1)) if reply else None,
        diagnostic[reply.end() :] if reply else diagnostic,
    )
    status = _status_of(status, diagnostic)
    return Finding(kind, address, status, diagnostic, final=not delayed)


def _status_of(status: str, diagnostic: str) -> str:
    """The most specific status code: a generic x.0.0 gives way to the diagnostic's."""
    found = _STATUS.search(diagnostic)
    if (not status or status.endswith(".0.0")) and found:
        return found.group(0)
    return status


def _complaints(msg: Message, originals: list[Message]) -> list[Finding]:
    findings = []
    for part in _parts(msg, "message/feedback-report"):
        for block in _field_blocks(part)[:1]:
            kind = _clean(block.get("Feedback-Type") or "abuse").lower()
            addresses = [
                _address(v)
                for v in block.get_all("Original-Rcpt-To", [])
                + block.get_all("Removal-Recipient", [])
            ]
            if kind == "auth-failure":  # DMARC/DKIM failure: our set-up, not them
                findings.append(Finding(Kind.POLICY, "", "", _feedback(block), False))
            elif kind in _COMPLAINT_TYPES:
                for address in dict.fromkeys(addresses or _complainers(originals)):
                    findings.append(Finding(Kind.COMPLAINT, address, "", kind))
    return findings


def _feedback(block: Message) -> str:
    details = (block.get(name, "") for name in ("Auth-Failure", "Reported-Domain"))
    return _clean("auth-failure " + " ".join(details))


def _complainers(originals: list[Message]) -> list[str]:
    """Who complained, from the quoted original (providers may redact it)."""
    for headers in originals:
        # Microsoft's JMRP names the recipient in its own header.
        for name in ("X-HmXmrOriginalRecipient", "To"):
            found = [a for _n, a in getaddresses(headers.get_all(name, [])) if a]
            if found:
                return found
    return [""]


def _is_auto_reply(msg: Message) -> bool:
    """An out-of-office or other automatic reply (RFC 3834), not a bounce."""
    if _DAEMON.search(_header(msg, "From")) or msg.get("X-Failed-Recipients"):
        return False
    return (
        _header(msg, "Auto-Submitted").lower().startswith("auto-replied")
        or any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond"))
        or _header(msg, "Precedence").lower() == "auto_reply"
        or bool(_AUTO_REPLY_SUBJECT.match(_header(msg, "Subject")))
    )


def _other_findings(msg: Message) -> list[Finding]:
    """Failed addresses of a non-standard bounce (qmail, old Exim...)."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:
        # Heuristics on arbitrary mail: some detectors trip over odd messages
        # (e.g. one without From). Such a message is simply not a bounce to us.
        log.warning("flufl.bounce could not read a message", exc_info=True)
        return []
    text = _body_text(msg)
    findings = []
    for address, final in [(a, True) for a in sorted(permanent)] + [
        (a, False) for a in sorted(temporary - permanent)
    ]:
        found = address.decode("ascii", "replace")
        status, diagnostic = _near(text, found)
        reply = _REPLY_CODE.search(diagnostic)
        if final:
            code = int(reply.group(1)) if reply else None
            kind = classify(status, code, diagnostic)
        else:
            kind = Kind.SOFT
        findings.append(Finding(kind, found, status, diagnostic, final))
    return findings


def _body_text(msg: Message) -> str:
    parts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            data = part.get_payload(decode=True) or b""
            parts.append(_decoded(data, part.get_content_charset()))
    return "\n".join(parts)


def _near(text: str, address: str) -> tuple[str, str]:
    """The status code and the server's words that follow an address in a text."""
    start = text.lower().find(address.lower())
    after = (
        text[start + len(address) : start + len(address) + 600] if start >= 0 else ""
    )
    lines = []
    for line in after.splitlines():
        line = line.strip().lstrip(">:").strip()
        if line.startswith("---"):  # the copy of the original message begins
            break
        if line:
            lines.append(line)
    said = [i for i, line in enumerate(lines) if _REPLY_START.match(line)]
    said += [i for i, line in enumerate(lines) if _STATUS.search(line)]
    diagnostic = _clean(" ".join(lines[min(said) :][:2] if said else lines[:2]))
    status = _STATUS.search(diagnostic) or _STATUS.search(text)
    return (status.group(0) if status else ""), diagnostic


# ------------------------------------------------------------------ acting


@dataclass
class Outcome:
    """What was done about one finding."""

    kind: Kind
    email: str
    status: str
    diagnostic: str
    action: str  # bounced, unsubscribed, counted, reported, recorded, unmatched
    send_id: int | None = None
    campaign_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**self.__dict__, "kind": self.kind.value}


@dataclass
class Processed:
    """The result of processing one report."""

    outcomes: list[Outcome] = field(default_factory=list)
    report_id: int | None = None
    duplicate: bool = False
    ignored: str | None = None  # auto-reply, forged, not a report

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "report_id": self.report_id,
            "duplicate": self.duplicate,
            "ignored": self.ignored,
            "findings": [o.as_dict() for o in self.outcomes],
        }


def verp_secrets() -> list[bytes]:
    """The keys VERP MACs may be made with (the current one and older ones)."""
    keys = [current_app.config["SECRET_KEY"]]
    keys += current_app.config.get("SECRET_KEY_FALLBACKS") or []
    return [key.encode() for key in keys]


def process_message(
    session: Session,
    raw: bytes,
    source: str,
    library_ids: list[int] | None = None,
) -> Processed:
    """Parse one message and act on it. Commits. `library_ids` limits whom it may
    touch (a library token's); None means any library (our own mailbox)."""
    report = parse(raw, verp_secrets())
    if report.forged:
        return Processed(ignored="forged")
    if report.auto_reply:
        return Processed(ignored="auto-reply")
    if not report.findings:
        return Processed(ignored="not a report")
    return apply(session, report, source, library_ids)


def apply(
    session: Session, report: Report, source: str, library_ids: list[int] | None
) -> Processed:
    """Act on a parsed report once: a report seen before changes nothing. Commits."""
    done = session.scalar(select(BounceReport).filter_by(digest=report.digest))
    if done is not None:
        return Processed(report_id=done.id, duplicate=True)
    stored = BounceReport(digest=report.digest, source=source)
    session.add(stored)
    try:
        session.flush()
    except IntegrityError:
        # Another process is handling the same report right now.
        session.rollback()
        return Processed(duplicate=True)
    result = Processed(report_id=stored.id)
    for finding in report.findings:
        copy = _find_copy(session, report, finding, library_ids)
        result.outcomes.append(_act(session, stored, finding, copy))
    session.commit()
    return result


def _find_copy(
    session: Session,
    report: Report,
    finding: Finding,
    library_ids: list[int] | None,
) -> SendLog | None:
    """Our copy the finding is about: by VERP, by Message-ID, else by address."""
    copy = None
    if report.send_id is not None:
        copy = session.get(SendLog, report.send_id)
    if copy is None and report.message_ids:
        copy = session.scalar(
            select(SendLog).where(SendLog.message_id.in_(report.message_ids[:20]))
        )
    if copy is None and finding.email:
        copy = _copy_by_address(session, finding.email, report.list_id, library_ids)
    if copy is None:
        return None
    campaign = session.get(Campaign, copy.campaign_id)
    if library_ids is not None and campaign.library_id not in library_ids:
        return None
    return copy


def _copy_by_address(
    session: Session, address: str, list_id: str | None, library_ids: list[int] | None
) -> SendLog | None:
    """The latest copy sent to `address` in the caller's libraries (in the club of
    the quoted List-Id, if there is one). Only for a caller who proved to be a
    library (an API token): anyone can write to a bounce mailbox, and an address
    and a public List-Id prove nothing. Only recent copies: reports come within
    days, and an old one is more likely made up."""
    if library_ids is None:
        return None
    query = (
        select(SendLog)
        .join(Subscriber, Subscriber.id == SendLog.subscriber_id)
        .join(Campaign, Campaign.id == SendLog.campaign_id)
        .where(Subscriber.email_key == address.strip().lower())
        .where(SendLog.sent_at >= utcnow() - _window())
        .order_by(SendLog.id.desc())
        .limit(1)
    )
    query = query.where(Campaign.library_id.in_(library_ids))
    club = _club_of_list_id(session, list_id)
    if club is not None:
        query = query.where(Campaign.club_id == club.id)
    return session.scalar(query)


def _club_of_list_id(session: Session, list_id: str | None) -> Club | None:
    """The club of a List-Id we wrote: `Name <club.library.domain>`."""
    match = re.search(r"<([a-z0-9-]+)\.([a-z0-9-]+)\.[^<>\s]+>", list_id or "")
    if match is None:
        return None
    return session.scalar(
        select(Club)
        .join(Library, Library.id == Club.library_id)
        .where(Club.slug == match.group(1), Library.slug == match.group(2))
    )


def _act(
    session: Session, report: BounceReport, finding: Finding, copy: SendLog | None
) -> Outcome:
    event = BounceEvent(
        report_id=report.id,
        kind=finding.kind,
        email=finding.email[:320],
        status=finding.status[:16],
        diagnostic=finding.diagnostic[:500],
        action="unmatched",
    )
    session.add(event)
    if copy is not None:
        campaign = session.get(Campaign, copy.campaign_id)
        event.library_id, event.campaign_id = campaign.library_id, campaign.id
        event.send_log_id = copy.id
        event.subscriber_id = copy.subscriber_id
        event.membership_id = copy.membership_id
        event.action = _change(session, finding, copy, event)
    return Outcome(
        finding.kind,
        finding.email,
        finding.status,
        finding.diagnostic,
        event.action,
        copy.id if copy else None,
        event.campaign_id,
    )


def _change(
    session: Session, finding: Finding, copy: SendLog, event: BounceEvent
) -> str:
    """Change the copy and the membership as the finding says; the action taken."""
    if finding.kind is not Kind.COMPLAINT and finding.final:
        if copy.status is SendStatus.SENT:
            copy.status = SendStatus.BOUNCED
        copy.last_error = _clean(f"{finding.status} {finding.diagnostic}")
    membership = session.get(Membership, copy.membership_id or 0)
    if finding.kind is Kind.POLICY:
        return "reported"
    if membership is None:
        return "recorded"
    if finding.kind is Kind.COMPLAINT:
        return _complained(membership)
    if finding.kind is Kind.SOFT:
        if not finding.final:
            # "Delayed": the server still tries, the mail may well arrive.
            return "delayed"
        session.flush()
        if _soft_bounces(session, membership.id) < soft_limit():
            return "counted"
    return _bounce(membership)


def _complained(membership: Membership) -> str:
    return "unsubscribed" if unsubscribe(membership) else "recorded"


def _bounce(membership: Membership) -> str:
    if membership.status is not MembershipStatus.CONFIRMED:
        return "recorded"
    membership.status = MembershipStatus.BOUNCED
    return "bounced"


def soft_limit() -> int:
    """How many temporary failures (of different mails) bounce a member."""
    return int(current_app.config.get("BOUNCE_SOFT_LIMIT", 3))


def _window() -> timedelta:
    return timedelta(days=int(current_app.config.get("BOUNCE_SOFT_WINDOW_DAYS", 30)))


def _soft_bounces(session: Session, membership_id: int) -> int:
    """Temporary failures of different copies within the window (a copy that
    failed several times counts once; delay warnings don't count)."""
    since = utcnow() - _window()
    return session.scalar(
        select(func.count(func.distinct(BounceEvent.send_log_id))).where(
            BounceEvent.membership_id == membership_id,
            BounceEvent.kind == Kind.SOFT,
            BounceEvent.action != "delayed",
            BounceEvent.created_at >= since,
        )
    )


# ------------------------------------------------------------------ reading for staff


def latest_bounces(
    session: Session, membership_ids: list[int]
) -> dict[int, BounceEvent]:
    """Per membership, the latest event that bounced or unsubscribed it."""
    rows = session.scalars(
        select(BounceEvent)
        .where(
            BounceEvent.membership_id.in_(membership_ids),
            BounceEvent.action.in_(("bounced", "unsubscribed")),
        )
        .order_by(BounceEvent.id)
    ).all()
    return {row.membership_id: row for row in rows}


def policy_problems(
    session: Session, campaign_id: int, limit: int = 20
) -> list[BounceEvent]:
    """A campaign's refusals for policy reasons, newest first, for its page."""
    return list(
        session.scalars(
            select(BounceEvent)
            .where(BounceEvent.campaign_id == campaign_id)
            .where(BounceEvent.kind == Kind.POLICY)
            .order_by(BounceEvent.id.desc())
            .limit(limit)
        )
    )


def campaign_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """How many bounces of each kind a campaign's copies had."""
    rows = session.execute(
        select(BounceEvent.kind, func.count())
        .where(BounceEvent.campaign_id == campaign_id)
        .group_by(BounceEvent.kind)
    ).all()
    return {kind.value: count for kind, count in rows}


# ------------------------------------------------------------------ sources


class MailboxError(Exception):
    """A mailbox URL or path that can't be read; the message says why."""


def read_path(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each message in a file, an mbox, a maildir or a folder."""
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.keys()):
                yield key, box.get_bytes(key)
            return
        for item in sorted(p for p in path.iterdir() if p.is_file()):
            yield from read_path(item)
        return
    if not path.is_file():
        raise MailboxError(f"{path} is neither a file nor a folder.")
    with path.open("rb") as handle:
        is_mbox = handle.read(5) == b"From "
    if not is_mbox:
        yield path.name, path.read_bytes()
        return
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for key in box.iterkeys():
            yield f"{path.name}#{key}", box.get_bytes(key)
    finally:
        box.close()


@dataclass(frozen=True)
class MailboxUrl:
    """imaps://user:pass@host[:port]/FOLDER[?move=Folder] or pop3s://user:pass@host."""

    scheme: str
    host: str
    port: int | None
    user: str
    password: str
    folder: str
    move_to: str | None

    @classmethod
    def parse(cls, url: str) -> MailboxUrl:
        """Split a mailbox URL; MailboxError names what is wrong with it."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps", "pop3", "pop3s"):
            raise MailboxError("A mailbox URL starts with imaps://, imap://, pop3s://.")
        if not parts.hostname or not parts.username:
            raise MailboxError("A mailbox URL needs user:password@host.")
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port,
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.strip("/")) or "INBOX",
            move_to=unquote(query["move"]) if query.get("move") else None,
        )


Handler = Callable[[bytes], bool]


def read_mailbox(url: str, handle: Handler) -> int:
    """Hand every message of an IMAP or POP3 mailbox to `handle`; delete (or move)
    those it took. Returns how many messages were read."""
    where = MailboxUrl.parse(url)
    try:
        if where.scheme.startswith("imap"):
            return _read_imap(where, handle)
        return _read_pop3(where, handle)
    except (OSError, imaplib.IMAP4.error, poplib.error_proto) as exc:
        raise MailboxError(f"{where.scheme}://{where.host}: {exc}") from exc


def _read_imap(where: MailboxUrl, handle: Handler) -> int:
    if where.scheme == "imaps":
        conn = imaplib.IMAP4_SSL(
            where.host, where.port or 993, ssl_context=_verified_tls()
        )
    else:
        conn = imaplib.IMAP4(where.host, where.port or 143)
    try:
        conn.login(where.user, where.password)
        status, _data = conn.select(_quoted(where.folder))
        if status != "OK":
            raise MailboxError(f"There is no folder {where.folder}.")
        _status, data = conn.uid("SEARCH", None, "ALL")
        uids = data[0].split() if data and data[0] else []
        for uid in uids:
            _status, fetched = conn.uid("FETCH", uid, "(RFC822)")
            raw = next(item[1] for item in fetched if isinstance(item, tuple))
            if handle(raw):
                if where.move_to:
                    status, _data = conn.uid("COPY", uid, _quoted(where.move_to))
                    if status != "OK":  # imaplib says NO without raising
                        raise MailboxError(
                            f"Could not move a report to {where.move_to}; "
                            "nothing was deleted."
                        )
                conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        conn.expunge()
        return len(uids)
    finally:
        conn.logout()


def _verified_tls() -> ssl.SSLContext:
    """A context that checks the server's certificate and name: imaplib and
    poplib check neither unless given one, and the mailbox password goes over it."""
    return ssl.create_default_context()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_pop3(where: MailboxUrl, handle: Handler) -> int:
    if where.scheme == "pop3s":
        conn = poplib.POP3_SSL(where.host, where.port or 995, context=_verified_tls())
    else:
        conn = poplib.POP3(where.host, where.port or 110)
    try:
        conn.user(where.user)
        conn.pass_(where.password)
        count = len(conn.list()[1])
        for number in range(1, count + 1):
            _response, lines, _size = conn.retr(number)
            if handle(b"\r\n".join(lines) + b"\r\n"):
                conn.dele(number)
        return count
    finally:
        conn.quit()  # POP3 deletes only on a clean QUIT


@dataclass
class Tally:
    """What a run over a mailbox did, for the command's summary."""

    messages: int = 0
    duplicates: int = 0
    ignored: int = 0
    actions: dict[str, int] = field(default_factory=dict)

    def add(self, processed: Processed) -> None:
        """Count one processed message."""
        self.messages += 1
        self.duplicates += processed.duplicate
        self.ignored += processed.ignored is not None
        for outcome in processed.outcomes:
            self.actions[outcome.action] = self.actions.get(outcome.action, 0) + 1


def processor(session: Session, source: str, tally: Tally) -> Handler:
    """A handler that processes one message and says whether it may be deleted."""

    def handle(raw: bytes) -> bool:
        try:
            tally.add(process_message(session, raw, source))
        except Exception:
            # Keep the message for the next run; the others still get processed.
            session.rollback()
            log.exception("a %s message could not be processed", source)
            return False
        return True

    return handle


def poll_mailbox(session: Session) -> Tally | None:
    """Read BOUNCE_MAILBOX_URL once, if set (the scheduler calls this)."""
    url = current_app.config.get("BOUNCE_MAILBOX_URL")
    if not url:
        return None
    tally = Tally()
    source = urlsplit(url).scheme.rstrip("s")
    read_mailbox(url, processor(session, source, tally))
    return tally
