"""The sending engine against a real SMTP server: schedule, audience, exactly once."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from campaigns import sending
from campaigns.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Event,
    ScheduleMode,
    SendLog,
    SendStatus,
)
from campaigns.rendering import builtin_templates
from conftest import make_club, make_library, make_subscriber
from klubpost.db import db as _db
from klubpost.mail import OutboxMessage
from subscribers.models import Membership, MembershipStatus
from subscribers.services import join_club, unsubscribe

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _template_key(kind: str, language: str) -> str:
    return next(
        t.key for t in builtin_templates() if t.kind == kind and t.language == language
    )


def make_campaign(db, club, *, event=None, kind=CampaignKind.REGULAR, **kw) -> Campaign:
    fields = dict(
        library_id=club.library_id,
        club_id=club.id,
        kind=kind,
        event_id=event.id if event else None,
        subject="Nyt fra debatklubben",
        preheader="Klima og kunst",
        template_key=_template_key(kind.value, club.language),
        blocks=[{"type": "text", "heading": "Hej", "text": "Vi ses på biblioteket."}],
    )
    fields.update(kw)
    campaign = Campaign(**fields)
    db.session.add(campaign)
    db.session.commit()
    return campaign


def add_members(db, club, count: int, start: int = 0) -> list[Membership]:
    members = []
    for n in range(start, start + count):
        subscriber = make_subscriber(
            db, club.library, f"m{n}@example.dk", first_name=f"Medlem{n}"
        )
        members.append(
            join_club(db.session, club, subscriber, source="test", consent_given=True)
        )
    db.session.commit()
    return members


@pytest.fixture
def club(db):
    library = make_library(db, timezone="Europe/Copenhagen")
    return make_club(db, library)


def _start_now(db, campaign) -> int:
    sending.schedule(campaign, ScheduleMode.NOW, now=NOW)
    db.session.commit()
    started = sending.start_due(db.session, now=NOW)
    assert started == [campaign.id]
    return db.session.scalar(
        select(func.count()).select_from(SendLog).filter_by(campaign_id=campaign.id)
    )


def _statuses(db, campaign) -> dict:
    return dict(
        db.session.execute(
            select(SendLog.status, func.count())
            .filter_by(campaign_id=campaign.id)
            .group_by(SendLog.status)
        ).all()
    )


# ----------------------------------------------------------------- schedule


def test_fixed_and_event_relative_schedules_in_the_library_time_zone(db, club):
    event = Event(
        library_id=club.library_id,
        title="Debat",
        starts_at=datetime(2027, 3, 26, 18, 0, tzinfo=UTC),  # 19:00 in Copenhagen
        ends_at=datetime(2027, 3, 26, 20, 0, tzinfo=UTC),
    )
    db.session.add(event)
    db.session.commit()
    before = make_campaign(db, club, event=event, kind=CampaignKind.BEFORE_EVENT)
    after = make_campaign(db, club, event=event, kind=CampaignKind.AFTER_EVENT)
    fixed = make_campaign(db, club)

    due = sending.schedule(
        before, ScheduleMode.BEFORE_EVENT, offset_minutes=3 * 24 * 60, now=NOW
    )
    assert due == datetime(2027, 3, 23, 18, 0, tzinfo=UTC)
    assert sending.schedule(
        after, ScheduleMode.AFTER_EVENT, offset_minutes=120, now=NOW
    ) == (datetime(2027, 3, 26, 22, 0, tzinfo=UTC))
    at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert sending.schedule(fixed, ScheduleMode.FIXED, send_at=at, now=NOW) == at
    db.session.commit()
    assert {c.status for c in (before, after, fixed)} == {CampaignStatus.SCHEDULED}

    # The debate moves a week later: its newsletters move with it.
    event.starts_at += timedelta(days=7)
    event.ends_at += timedelta(days=7)
    assert sending.follow_event(db.session, event, now=NOW) == 2
    db.session.commit()
    assert before.send_at == datetime(2027, 3, 30, 18, 0, tzinfo=UTC)
    assert after.send_at == datetime(2027, 4, 2, 22, 0, tzinfo=UTC)
    assert fixed.send_at == at


def test_bad_schedules_are_refused_and_change_nothing(db, club):
    campaign = make_campaign(db, club)
    with pytest.raises(sending.SendingError, match="already passed"):
        sending.schedule(
            campaign, ScheduleMode.FIXED, send_at=NOW - timedelta(days=1), now=NOW
        )
    with pytest.raises(sending.SendingError, match="needs an event"):
        sending.schedule(campaign, ScheduleMode.BEFORE_EVENT, now=NOW)
    db.session.rollback()
    assert campaign.status is CampaignStatus.DRAFT and campaign.send_at is None

    nameless = make_campaign(db, club, subject="  ")
    with pytest.raises(sending.SendingError, match="subject"):
        sending.schedule(nameless, ScheduleMode.NOW, now=NOW)


def test_transitions_follow_the_table(db, club):
    campaign = make_campaign(db, club)
    with pytest.raises(sending.SendingError):
        sending.pause(campaign)
    add_members(db, club, 2)
    _start_now(db, campaign)
    sending.pause(campaign)
    sending.resume(campaign)
    sending.cancel(db.session, campaign)
    db.session.commit()
    with pytest.raises(sending.SendingError):
        sending.resume(campaign)
    assert _statuses(db, campaign) == {SendStatus.SKIPPED: 2}


def test_a_campaign_is_not_started_before_it_is_due(db, club):
    campaign = make_campaign(db, club)
    sending.schedule(
        campaign, ScheduleMode.FIXED, send_at=NOW + timedelta(hours=1), now=NOW
    )
    db.session.commit()
    assert sending.start_due(db.session, now=NOW) == []
    assert sending.start_due(db.session, now=NOW + timedelta(hours=1)) == [campaign.id]


# ----------------------------------------------------------------- audience


def test_audience_is_the_confirmed_members_when_sending_starts(db, club):
    confirmed = add_members(db, club, 5)
    left = make_subscriber(db, club.library, "left@example.dk")
    unsubscribe(join_club(db.session, club, left, source="t", consent_given=True))
    pending = make_subscriber(db, club.library, "pending@example.dk")
    join_club(db.session, club, pending, source="t")  # never confirmed
    other_club = make_club(db, club.library, slug="vip")
    add_members(db, other_club, 1, start=100)
    db.session.commit()
    campaign = make_campaign(db, club)

    assert _start_now(db, campaign) == 5
    add_members(db, club, 1, start=50)  # joins after the start: not mixed in
    queued = db.session.scalars(
        select(SendLog.subscriber_id).filter_by(campaign_id=campaign.id)
    ).all()
    assert sorted(queued) == sorted(m.subscriber_id for m in confirmed)


def test_a_big_audience_is_written_in_chunks_while_the_first_mails_go_out(
    app, db, club
):
    """The audience is fixed at the start, but written down chunk by chunk
    (here 7 members at a time, SEND_AUDIENCE_CHUNK in the tests' config)."""
    from subscribers.services import confirm

    assert app.config["SEND_AUDIENCE_CHUNK"] == 7
    members = add_members(db, club, 20)
    pending = make_subscriber(db, club.library, "pending@example.dk")
    waiting = join_club(db.session, club, pending, source="t")
    db.session.commit()
    campaign = make_campaign(db, club)

    assert _start_now(db, campaign) == 7  # rows written: the first chunk
    assert (campaign.audience_size, campaign.audience_after) == (20, members[6].id)
    state = sending.progress(db.session, campaign)
    assert (state.total, state.queued) == (20, 20)
    # Meanwhile: someone confirms, someone joins, someone not yet written leaves.
    assert confirm(waiting)
    add_members(db, club, 1, start=50)
    unsubscribe(members[15])
    db.session.commit()
    assert not sending.finish_if_done(db.session, campaign.id, NOW)

    assert sending.fill_audience(db.session, campaign.id)  # members 8-14
    assert sending.fill_audience(db.session, campaign.id)  # the rest: 16-20
    assert not sending.fill_audience(db.session, campaign.id)  # complete
    db.session.expire_all()
    assert campaign.audience_after is None
    queued = db.session.scalars(
        select(SendLog.subscriber_id).filter_by(campaign_id=campaign.id)
    ).all()
    expected = [m.subscriber_id for n, m in enumerate(members) if n != 15]
    assert sorted(queued) == sorted(expected)
    state = sending.progress(db.session, campaign)
    assert (state.total, state.queued) == (19, 19)


def test_senders_write_the_rest_of_the_audience_and_finish_only_then(app, db, club):
    add_members(db, club, 30)
    campaign = make_campaign(db, club)
    assert _start_now(db, campaign) == 7

    sent = _sender(app, batch_size=5, connections=3).run()

    db.session.expire_all()
    assert sent == 30
    assert _statuses(db, campaign) == {SendStatus.SENT: 30}
    assert campaign.status is CampaignStatus.SENT
    assert campaign.audience_after is None
    outbox = db.session.scalars(select(OutboxMessage.recipients)).all()
    assert sorted(outbox) == sorted(f"m{n}@example.dk" for n in range(30))


def test_a_cancelled_campaign_writes_no_more_of_its_audience(db, club):
    add_members(db, club, 20)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)

    sending.cancel(db.session, campaign)
    db.session.commit()

    assert not sending.fill_audience(db.session, campaign.id)
    assert _statuses(db, campaign) == {SendStatus.SKIPPED: 7}
    assert campaign.audience_after is None


# ----------------------------------------------------------------- sending


def _sender(app, **kw):
    return sending.Sender(app, connections=kw.pop("connections", 2), **kw)


def test_every_member_gets_exactly_one_mail_with_the_list_headers(
    smtp_app_config, smtp_server, app, db, club
):
    smtp_server.pipelining = True
    add_members(db, club, 30)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)

    sent = _sender(app, batch_size=7).run()

    assert sent == 30
    recipients = sorted(r[0] for _f, r, _d in smtp_server.received)
    assert recipients == sorted(f"m{n}@example.dk" for n in range(30))
    db.session.expire_all()
    assert campaign.status is CampaignStatus.SENT and campaign.sent_at is not None
    assert _statuses(db, campaign) == {SendStatus.SENT: 30}
    message = next(
        m for m in smtp_server.messages if m["To"].addresses[0].username == "m3"
    )
    assert message["Subject"] == "Nyt fra debatklubben"
    assert message["List-Unsubscribe"].startswith("<http://klubpost.test/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (
        message["List-Id"]
        == f"Her er debat <debat.{club.library.slug}.{club.library.domain}>"
    )
    assert message["Message-ID"] and message["Date"]
    html = message.get_body(("html",)).get_content()
    assert "Medlem3" in html and "Vi ses på biblioteket." in html
    text = message.get_body(("plain",)).get_content()
    assert "Vi ses på biblioteket." in text
    envelope_from = next(
        f for f, r, _d in smtp_server.received if r == ["m3@example.dk"]
    )
    log = db.session.scalar(
        select(SendLog)
        .filter_by(campaign_id=campaign.id, status=SendStatus.SENT)
        .where(SendLog.message_id == message["Message-ID"])
    )
    assert envelope_from.startswith(f"bounces+{log.id}.")
    progress = sending.progress(db.session, campaign)
    assert (progress.total, progress.sent, progress.queued) == (30, 30, 0)


def test_a_running_sender_has_committed_every_accepted_mail_while_it_waits(
    smtp_app_config, smtp_server, app, db, club
):
    """A batch's results are committed with the next claim: a sender that stops
    finding work (paused campaign) must not keep them open meanwhile."""
    import threading
    import time

    smtp_server.delay = 0.02
    add_members(db, club, 40)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)
    done = threading.Event()
    sender = _sender(app, batch_size=5, connections=1)
    thread = threading.Thread(target=sender.run, kwargs={"wait_for": done.is_set})
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(smtp_server.received) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        sending.pause(db.session.get(Campaign, campaign.id))
        db.session.commit()
        # The sender finishes its batch in flight, then finds nothing to do.
        while time.monotonic() < deadline:
            db.session.expire_all()
            received = len(smtp_server.received)
            if _statuses(db, campaign).get(SendStatus.SENT) == received:
                break
            time.sleep(0.05)
        time.sleep(0.6)  # a round or more of waiting
        db.session.expire_all()
        received = len(smtp_server.received)
        assert 10 <= received < 40
        assert thread.is_alive()
        # (The rest of the audience is written once it goes on.)
        assert _statuses(db, campaign)[SendStatus.SENT] == received
        state = sending.progress(db.session, db.session.get(Campaign, campaign.id))
        assert (state.sent, state.queued, state.total) == (received, 40 - received, 40)
    finally:
        done.set()
        thread.join(60)


def test_a_batch_is_recorded_with_each_rows_own_message_id(monkeypatch, app, db, club):
    from campaigns.smtp import Result

    monkeypatch.setattr(sending, "_MARK_SENT_MAX", 3)  # several statements
    add_members(db, club, 8)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)
    rows, _skipped = sending.claim_batch(db.session, campaign.id, 8, NOW)
    results = [
        (row, Result(row.send_id, 250 if n != 4 else 550, "ok"), f"<{row.send_id}.x@t>")
        for n, row in enumerate(rows)
    ]

    sending.record_results(db.session, results, NOW)

    db.session.expire_all()
    logs = db.session.scalars(
        select(SendLog).filter_by(campaign_id=campaign.id).order_by(SendLog.id)
    ).all()
    assert [log.id for log in logs] == [row.send_id for row in rows]
    for n, log in enumerate(logs):
        if n == 4:
            assert (log.status, log.message_id) == (SendStatus.FAILED, None)
        else:
            assert log.status is SendStatus.SENT
            assert log.message_id == f"<{log.id}.x@t>"
            assert log.sent_at == NOW and log.claimed_until is None


def test_the_one_click_unsubscribe_link_in_the_mail_works(
    smtp_app_config, smtp_server, app, db, club, client
):
    members = add_members(db, club, 1)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)
    _sender(app, connections=1).run()

    url = smtp_server.messages[0]["List-Unsubscribe"].strip("<>")
    response = client.post(
        url.removeprefix("http://klubpost.test"),
        data={"List-Unsubscribe": "One-Click"},
    )
    assert response.status_code == 200
    db.session.expire_all()
    assert members[0].status is MembershipStatus.UNSUBSCRIBED


def test_a_member_who_leaves_during_the_send_gets_nothing_more(
    smtp_app_config, smtp_server, app, db, club
):
    members = add_members(db, club, 4)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)
    unsubscribe(members[2])
    db.session.commit()

    _sender(app, connections=1).run()

    received = {r[0] for _f, r, _d in smtp_server.received}
    assert "m2@example.dk" not in received and len(received) == 3
    assert _statuses(db, campaign) == {SendStatus.SENT: 3, SendStatus.SKIPPED: 1}


def test_refusals_retry_fail_or_bounce_as_the_server_says(
    smtp_app_config, smtp_server, app, db, club
):
    smtp_server.refuse = {
        "m1@": "452 4.2.2 Mailbox full, try later",
        "m2@": "550 5.1.1 No such user",
        "m3@": "550 5.7.1 Message rejected as spam by policy",
    }
    members = add_members(db, club, 4)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)

    _sender(app, connections=1).run()

    db.session.expire_all()
    logs = {
        log.subscriber_id: log
        for log in db.session.scalars(
            select(SendLog).filter_by(campaign_id=campaign.id)
        )
    }
    by_member = {m.subscriber.email: logs[m.subscriber_id] for m in members}
    assert by_member["m0@example.dk"].status is SendStatus.SENT
    full = by_member["m1@example.dk"]
    assert full.status is SendStatus.QUEUED and full.next_attempt_at is not None
    assert "Mailbox full" in full.last_error
    assert by_member["m2@example.dk"].status is SendStatus.FAILED
    assert members[2].status is MembershipStatus.BOUNCED  # the address is gone
    assert by_member["m3@example.dk"].status is SendStatus.FAILED
    assert members[3].status is MembershipStatus.CONFIRMED  # our problem, not theirs
    assert campaign.status is CampaignStatus.SENDING  # m1 is still to come

    # Later the mailbox has room again: the retry goes out and the campaign ends.
    smtp_server.refuse = {}
    full.next_attempt_at = sending.utcnow() - timedelta(seconds=1)
    db.session.commit()
    _sender(app, connections=1).run()
    db.session.expire_all()
    assert full.status is SendStatus.SENT and full.attempts == 2
    assert campaign.status is CampaignStatus.SENT


def test_a_rate_limited_batch_never_outlasts_its_lease(
    smtp_app_config, smtp_server, db, club
):
    """Held back by the rate limit longer than its lease, a batch's rest goes
    back to the queue unsent: otherwise another thread (or sender) would claim
    the same rows once the lease ran out and the members would get two mails."""
    from klubpost import create_app

    smtp_app_config.update(SEND_LEASE_SECONDS=1, SEND_RATE_PER_SECOND=40)
    slow_app = create_app(smtp_app_config)
    add_members(db, club, 120)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)

    # Each batch of 40 needs 1 s of the limit's time, as long as the lease: the
    # third batch would wait 2 s, and its rows be claimed again meanwhile.
    sent = sending.Sender(slow_app, connections=2, batch_size=40).run()

    recipients = [r[0] for _f, r, _d in smtp_server.received]
    assert sorted(recipients) == sorted(f"m{n}@example.dk" for n in range(120))
    assert sent == 120
    db.session.expire_all()
    assert _statuses(db, campaign) == {SendStatus.SENT: 120}
    assert campaign.status is CampaignStatus.SENT
    with slow_app.app_context():
        _db.engine.dispose()


def test_a_server_that_is_down_makes_the_campaign_wait_not_drop_mail(
    app_config, smtp_server, db, club
):
    from klubpost import create_app

    app_config["MAIL_URL"] = "smtp://127.0.0.1:1"  # nothing listens there
    down_app = create_app(app_config)
    add_members(db, club, 3)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)

    assert sending.Sender(down_app, connections=1).run() == 0
    db.session.expire_all()
    rows = db.session.scalars(select(SendLog).filter_by(campaign_id=campaign.id)).all()
    assert {(r.status, r.attempts) for r in rows} == {(SendStatus.QUEUED, 0)}
    assert "cannot reach" in rows[0].last_error
    assert campaign.status is CampaignStatus.SENDING

    app_config["MAIL_URL"] = f"smtp://127.0.0.1:{smtp_server.port}"
    up_app = create_app(app_config)
    for row in rows:
        row.next_attempt_at = None
    db.session.commit()
    assert sending.Sender(up_app, connections=1).run() == 3
    assert len(smtp_server.received) == 3
    for extra_app in (down_app, up_app):
        with extra_app.app_context():
            _db.engine.dispose()


def test_in_development_mail_goes_to_the_outbox(app, db, club):
    add_members(db, club, 2)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)
    assert _sender(app).run() == 2
    from conftest import outbox_messages
    from klubpost.mail import OutboxMessage

    stored = db.session.scalars(select(OutboxMessage.library_id)).all()
    assert stored == [club.library_id] * 2  # shown to the library's staff
    assert sorted(str(m["To"]) for m in outbox_messages(db)) == [
        "Medlem0 <m0@example.dk>",
        "Medlem1 <m1@example.dk>",
    ]


def test_editing_the_event_moves_its_scheduled_newsletter(db, club):
    from campaigns.services import apply_event, create_event

    event = create_event(
        db.session, club.library, {"title": "Debat", "starts_at": "2027-03-26T19:00"}
    )
    db.session.commit()
    campaign = make_campaign(db, club, event=event, kind=CampaignKind.BEFORE_EVENT)
    sending.schedule(campaign, ScheduleMode.BEFORE_EVENT, offset_minutes=60, now=NOW)
    db.session.commit()
    assert campaign.send_at == datetime(2027, 3, 26, 17, 0, tzinfo=UTC)

    apply_event(db.session, event, club.library, {"starts_at": "2027-04-02T19:00"})
    db.session.commit()

    # 19:00 in Copenhagen is 17:00 UTC after the clocks went forward.
    assert campaign.send_at == datetime(2027, 4, 2, 16, 0, tzinfo=UTC)


# ----------------------------------------------------------------- the web UI


def _editor_login(client, db, club):
    from accounts.models import Role
    from conftest import login, make_user

    user = make_user(db, club.library, Role.EDITOR)
    login(client, user)
    return user


def test_an_editor_schedules_pauses_resumes_and_watches_a_send(client, db, club):
    from conftest import csrf_token

    add_members(db, club, 3)
    campaign = make_campaign(db, club)
    _editor_login(client, db, club)
    page = f"/campaigns/{campaign.id}"
    token = csrf_token(client, page)

    response = client.post(
        f"{page}/schedule",
        data={"csrf_token": token, "mode": "fixed", "send_at": "2030-05-01T09:30"},
    )
    assert response.status_code == 302
    db.session.expire_all()
    # 09:30 in Copenhagen (summer time) is 07:30 UTC.
    assert campaign.send_at == datetime(2030, 5, 1, 7, 30, tzinfo=UTC)
    html = client.get(page).get_data(as_text=True)
    assert "Scheduled for 2030-05-01 09:30" in html

    client.post(f"{page}/unschedule", data={"csrf_token": token})
    client.post(f"{page}/schedule", data={"csrf_token": token, "mode": "now"})
    sending.start_due(db.session)
    assert client.post(f"{page}/pause", data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert campaign.status is CampaignStatus.PAUSED
    data = client.get(f"{page}/progress").get_json()
    assert (data["status"], data["total"], data["queued"]) == ("paused", 3, 3)
    html = client.get(page).get_data(as_text=True)
    assert 'id="send-progress"' in html and "Resume" in html

    client.post(f"{page}/resume", data={"csrf_token": token})
    client.post(f"{page}/cancel", data={"csrf_token": token})
    db.session.expire_all()
    assert campaign.status is CampaignStatus.CANCELLED


def test_bad_schedule_input_is_a_clear_400_and_changes_nothing(client, db, club):
    from conftest import csrf_token

    campaign = make_campaign(db, club)
    _editor_login(client, db, club)
    page = f"/campaigns/{campaign.id}"
    token = csrf_token(client, page)

    for data, message in [
        ({"mode": "fixed", "send_at": "2001-01-01T10:00"}, "already passed"),
        ({"mode": "fixed", "send_at": "next tuesday"}, "Enter a date and time"),
        ({"mode": "fixed"}, "Choose the date and time"),
        ({"mode": "before_event", "offset_hours": "2"}, "needs an event"),
        ({"mode": "whenever"}, "When"),
        ({"mode": "now", "offset_hours": "-5"}, "Hours"),
    ]:
        response = client.post(f"{page}/schedule", data={"csrf_token": token, **data})
        assert response.status_code == 400, data
        assert message in response.get_data(as_text=True), data
    assert client.post(f"{page}/pause", data={"csrf_token": token}).status_code == 400
    assert client.post(f"{page}/schedule", data={"mode": "now"}).status_code == 400
    db.session.expire_all()
    assert campaign.status is CampaignStatus.DRAFT and campaign.send_at is None


# ----------------------------------------------------------------- the JSON API


def test_the_api_schedules_steers_and_reports_progress(client, db, club):
    from accounts.models import Role
    from accounts.services import issue_token
    from conftest import make_user

    def headers(role):
        _t, clear = issue_token(db.session, make_user(db, club.library, role), "t")
        db.session.commit()
        return {"Authorization": f"Bearer {clear}"}

    editor, staff = headers(Role.EDITOR), headers(Role.STAFF)
    add_members(db, club, 2)
    campaign = make_campaign(db, club)
    url = f"/api/campaigns/{campaign.id}"

    response = client.post(
        f"{url}/schedule",
        json={"mode": "fixed", "send_at": "2030-05-01T09:30"},
        headers=editor,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "scheduled"
    assert body["send_at"] == "2030-05-01T07:30:00+00:00"
    assert client.post(f"{url}/pause", headers=staff).status_code == 403

    response = client.post(f"{url}/pause", headers=editor)
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "status"

    for path, payload, field in [
        ("schedule", {"mode": "soon"}, "mode"),
        ("schedule", {"mode": "before_event", "offset_minutes": "3"}, "offset"),
        ("schedule", {"mode": "fixed", "send_at": "yesterday"}, "send_at"),
    ]:
        client.post(f"{url}/unschedule", headers=editor)
        response = client.post(f"{url}/{path}", json=payload, headers=editor)
        assert response.status_code == 422, payload
        assert response.get_json()["error"]["field"] == field
    db.session.expire_all()
    assert campaign.status is CampaignStatus.DRAFT

    client.post(f"{url}/schedule", json={"mode": "now"}, headers=editor)
    sending.start_due(db.session)
    assert client.post(f"{url}/pause", headers=editor).get_json()["status"] == "paused"
    progress = client.get(f"{url}/progress", headers=staff).get_json()["progress"]
    assert (progress["total"], progress["queued"], progress["sent"]) == (2, 2, 0)
    assert client.post(f"{url}/cancel", headers=editor).get_json()["status"] == (
        "cancelled"
    )


def test_a_finished_sends_rate_and_end_do_not_drift_afterwards(db, club):
    add_members(db, club, 4)
    campaign = make_campaign(db, club)
    _start_now(db, campaign)
    for row in db.session.scalars(select(SendLog).filter_by(campaign_id=campaign.id)):
        row.status, row.sent_at = SendStatus.SENT, NOW + timedelta(seconds=2)
    sending.change_status(campaign, CampaignStatus.SENT)
    campaign.sent_at = NOW + timedelta(seconds=2)
    db.session.commit()

    for later in (timedelta(seconds=3), timedelta(days=30)):
        state = sending.progress(db.session, campaign, now=NOW + later)
        assert state.rate_per_s == pytest.approx(2.0)  # 4 mails in 2 seconds
        assert state.expected_end == NOW + timedelta(seconds=2)
