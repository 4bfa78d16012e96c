"""The one scheduler process: wakes every few seconds, does what the database says.

Run it as `klubpost scheduler` (one per installation, never one per web worker).
Nothing is kept in memory between ticks, so a restart loses nothing.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from klubpost.db import db
from klubpost.mail import deliver_queued

log = logging.getLogger("klubpost.scheduler")

TICK_SECONDS = 2


def tick(app: Flask) -> None:
    """One round: send queued single mails, run queued imports."""
    from subscribers.imports import run_pending_imports
    from subscribers.mails import queue_import_confirmations

    with app.app_context():
        try:
            deliver_queued(db.session)
            run_pending_imports(db.session)
            queue_import_confirmations(db.session)
        finally:
            db.session.remove()


def run(app: Flask) -> None:
    """Run the scheduler until interrupted."""
    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        tick,
        "interval",
        seconds=TICK_SECONDS,
        args=[app],
        max_instances=1,
        coalesce=True,
        id="tick",
    )
    log.info("scheduler running; ticking every %s s", TICK_SECONDS)
    scheduler.start()
