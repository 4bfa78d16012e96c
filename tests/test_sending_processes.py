"""Sender processes for real: killed with SIGKILL mid-send, and three at once.

The SMTP server (aiosmtpd, in this process) counts what really arrived.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import func, select
from test_sending import add_members, make_campaign

from campaigns import sending
from campaigns.models import CampaignStatus, ScheduleMode, SendLog, SendStatus
from conftest import make_club, make_library

MEMBERS = 120
BATCH = 10
CONNECTIONS = 2
PROCESSES = 2  # each `klubpost send` forks this many sender processes


@pytest.fixture
def club(db):
    return make_club(db, make_library(db))


def _env(app_config, smtp_server, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        KLUBPOST_ENV="development",
        DATABASE_URL=app_config["DATABASE_URL"],
        SECRET_KEY=app_config["SECRET_KEY"],
        BASE_URL=app_config["BASE_URL"],
        MAIL_URL=f"smtp://127.0.0.1:{smtp_server.port}",
        SEND_BATCH_SIZE=str(BATCH),
        SEND_CONNECTIONS=str(CONNECTIONS),
        SEND_PROCESSES=str(PROCESSES),
    )
    env.update(extra)
    return env


def _sender(env, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "klubpost.cli", "send", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _scheduled_campaign(db, club):
    add_members(db, club, MEMBERS)
    campaign = make_campaign(db, club)
    sending.schedule(campaign, ScheduleMode.NOW)
    db.session.commit()
    return campaign


def _received(smtp_server) -> Counter:
    return Counter(rcpts[0] for _f, rcpts, _d in smtp_server.received)


def test_after_kill_9_and_a_restart_everyone_has_exactly_one_mail_but_in_flight(
    app_config, smtp_server, db, club
):
    smtp_server.delay = 0.01  # slow enough to be killed in the middle
    campaign = _scheduled_campaign(db, club)
    # A short lease, so that the restart can take over the dead sender's rows soon.
    env = _env(app_config, smtp_server, SEND_LEASE_SECONDS="2")

    first = _sender(env, str(campaign.id))
    deadline = time.monotonic() + 60
    while len(smtp_server.received) < MEMBERS // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    time.sleep(0.5)  # mails already handed over finish arriving
    at_kill = len(smtp_server.received)
    assert 0 < at_kill < MEMBERS, "the kill should come in the middle of the send"
    time.sleep(1)
    # Its sender processes died with it: nothing more arrives.
    assert len(smtp_server.received) == at_kill

    smtp_server.delay = 0
    time.sleep(2.1)  # the dead sender's leases run out
    second = _sender(env, str(campaign.id))
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output.decode()

    counts = _received(smtp_server)
    expected = {f"m{n}@example.dk" for n in range(MEMBERS)}
    assert set(counts) == expected  # nobody lost
    doubled = sum(c - 1 for c in counts.values())
    # Only the batches in flight at the kill may arrive twice: one per SMTP
    # connection of each of its processes.
    assert doubled <= BATCH * CONNECTIONS * PROCESSES
    db.session.expire_all()
    assert campaign.status is CampaignStatus.SENT
    statuses = dict(
        db.session.execute(
            select(SendLog.status, func.count())
            .filter_by(campaign_id=campaign.id)
            .group_by(SendLog.status)
        ).all()
    )
    assert statuses == {SendStatus.SENT: MEMBERS}


def test_three_senders_at_once_never_send_anyone_two_mails(
    app_config, smtp_server, db, club
):
    smtp_server.pipelining = True
    campaign = _scheduled_campaign(db, club)
    sending.start_due(db.session)
    env = _env(app_config, smtp_server)

    senders = [_sender(env, str(campaign.id)) for _ in range(3)]
    outputs = [s.communicate(timeout=120)[0].decode() for s in senders]

    assert [s.returncode for s in senders] == [0, 0, 0], outputs
    counts = _received(smtp_server)
    assert len(counts) == MEMBERS
    assert set(counts.values()) == {1}
    # Each sender really took part.
    sessions = smtp_server.sessions
    assert sessions >= 3


def test_the_scheduler_sends_with_a_second_process_beside_its_own(
    app_config, smtp_server, db, club
):
    import scheduler
    from klubpost import create_app
    from klubpost.db import db as _db

    smtp_server.delay = 0.08  # ten seconds alone: the second process joins in
    campaign = _scheduled_campaign(db, club)
    app = create_app(
        {
            **app_config,
            "MAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}",
            "SEND_PROCESSES": 2,
            "SEND_CONNECTIONS": 1,
            "SEND_BATCH_SIZE": BATCH,
        }
    )

    try:
        scheduler.send_campaigns(app)
    finally:
        with app.app_context():
            _db.engine.dispose()  # this second app's connections

    counts = _received(smtp_server)
    assert len(counts) == MEMBERS and set(counts.values()) == {1}
    # One connection each: the scheduler's own and its helper process's.
    assert smtp_server.sessions == 2
    db.session.expire_all()
    assert campaign.status is CampaignStatus.SENT
