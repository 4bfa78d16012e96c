"""The one scheduler process: wakes every few seconds, does what the database says.

Run it as `klubpost scheduler` (one per installation, never one per web worker).
Nothing is kept in memory between ticks, so a restart loses nothing.
"""

from __future__ import annotations

import fcntl
import logging
import subprocess
import sys
import time
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from sqlalchemy import text

from klubpost.config import environment_for
from klubpost.db import db
from klubpost.mail import deliver_queued, purge_done_mail

log = logging.getLogger("klubpost.scheduler")

TICK_SECONDS = 2


def tick(app: Flask) -> None:
    """One round: send queued single mails, run queued imports, roll up tracking,
    delete what is past its retention period."""
    from subscribers.imports import run_pending_imports
    from subscribers.mails import queue_import_confirmations
    from tracking.rollup import purge_events, roll_up

    with app.app_context():
        try:
            deliver_queued(db.session)
            run_pending_imports(db.session)
            queue_import_confirmations(db.session)
            roll_up(db.session)
            purge_events(db.session)
            purge_done_mail(db.session)
        finally:
            db.session.remove()


def send_campaigns(app: Flask) -> None:
    """Start the campaigns that are due, then send until nothing is due now.

    Building mails is CPU work and this process runs one thread at a time, so
    with `SEND_PROCESSES` > 1 a `klubpost send` child (a fresh process, not a
    fork of this threaded one) sends beside it. A configured rate limit is
    kept by this process alone.
    """
    from campaigns.sending import Sender, sending_campaign_ids, start_due

    with app.app_context():
        try:
            start_due(db.session)
            busy = bool(sending_campaign_ids(db.session))
        finally:
            db.session.remove()
    config = app.config
    extra = config["SEND_PROCESSES"] - 1
    limited = config.get("SEND_RATE_PER_SECOND") or config.get("SEND_RATE_PER_HOUR")
    helper = None
    if busy and extra > 0 and not limited:
        command = [sys.executable, "-m", "klubpost.cli", "send"]
        helper = subprocess.Popen(
            [*command, "--processes", str(extra)], env=environment_for(config)
        )
    try:
        Sender(app).run()
    finally:
        if helper is not None:
            helper.wait()


def read_bounces(app: Flask) -> None:
    """Process the bounces and complaints waiting in BOUNCE_MAILBOX_URL."""
    from campaigns.bounces import MailboxError, poll_mailbox

    with app.app_context():
        try:
            tally = poll_mailbox(db.session)
            if tally and tally.messages:
                log.info("bounce mailbox: %s message(s) read", tally.messages)
        except MailboxError as exc:
            # The mailbox may be down for a while; the next round tries again.
            log.warning("bounce mailbox: %s", exc)
        finally:
            db.session.remove()


def run(app: Flask) -> None:
    """Run the scheduler until interrupted; stand by while another one runs."""
    with app.app_context(), SchedulerLock(app):
        _run(app)


def _run(app: Flask) -> None:
    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        send_campaigns,
        "interval",
        seconds=TICK_SECONDS,
        args=[app],
        max_instances=1,
        coalesce=True,
        id="send",
    )
    scheduler.add_job(
        tick,
        "interval",
        seconds=TICK_SECONDS,
        args=[app],
        max_instances=1,
        coalesce=True,
        id="tick",
    )
    if app.config.get("BOUNCE_MAILBOX_URL"):
        scheduler.add_job(
            read_bounces,
            "interval",
            seconds=app.config["BOUNCE_POLL_SECONDS"],
            args=[app],
            max_instances=1,
            coalesce=True,
            id="bounces",
        )
    log.info("scheduler running; ticking every %s s", TICK_SECONDS)
    scheduler.start()


class SchedulerLock:
    """Only one scheduler acts at a time: the others wait until it is gone.

    On PostgreSQL a session-level advisory lock (released by the server when the
    holder's connection dies, even after kill -9); on SQLite, which lives on one
    machine, an exclusive lock on a file in the instance folder.
    """

    KEY = 0x6B6C7562  # "klub"

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._connection = None
        self._file = None

    def __enter__(self) -> SchedulerLock:
        waiting = False
        while not self._acquire():
            if not waiting:
                log.info("another scheduler is active; standing by")
                waiting = True
            time.sleep(5)
        return self

    def _acquire(self) -> bool:
        if db.engine.dialect.name == "postgresql":
            self._connection = db.engine.connect()
            got = self._connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self.KEY}
            )
            self._connection.commit()
            if not got:
                self._connection.close()
            return bool(got)
        path = Path(self.app.instance_path) / "scheduler.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            return False
        return True

    def __exit__(self, *exc_info) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._file is not None:
            self._file.close()
