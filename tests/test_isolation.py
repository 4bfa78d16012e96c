"""One library never sees or changes another library's data through the web UI."""

import pytest
from sqlalchemy import select

from accounts.models import ApiToken, Consortium, Role
from accounts.services import issue_token
from campaigns.models import Campaign, Template
from campaigns.services import create_campaign, create_event
from conftest import (
    csrf_token,
    login,
    make_club,
    make_library,
    make_subscriber,
    make_user,
)
from klubpost.mail import OutboxMessage
from subscribers.models import Club, ImportJob, Membership, Subscriber
from subscribers.services import join_club

STAFF_BLUEPRINTS = {
    "accounts",
    "subscribers",
    "imports",
    "outbox",
    "campaigns",
    "stats",
}


@pytest.fixture
def other_library(db):
    """Library B with one of everything, and the ids to put into URLs."""
    library = make_library(db, slug="utrecht", language="nl")
    club = make_club(db, library, slug="debat", name="Debatclub")
    subscriber = make_subscriber(db, library, "geheim@example.nl", first_name="Geheim")
    membership = join_club(db.session, club, subscriber, source="t", consent_given=True)
    user = make_user(db, library, Role.EDITOR)
    token, _clear = issue_token(db.session, user, "b-token")
    job = ImportJob(club_id=club.id, filename="b.csv", content=b"email\n")
    message = OutboxMessage(
        library_id=library.id, sender="a@example.nl", recipients="b@example.nl", raw=b""
    )
    event = create_event(
        db.session, library, {"title": "Geheim", "starts_at": "2026-12-01T19:00"}
    )
    template = Template(
        library_id=library.id,
        name="B",
        kind="regular",
        language="nl",
        source="<mjml></mjml>",
    )
    db.session.add_all([job, message, template])
    db.session.flush()
    campaign = create_campaign(
        db.session, club, user, {"kind": "regular", "subject": "Geheim"}
    )
    db.session.commit()
    return {
        "club_id": club.id,
        "subscriber_id": subscriber.id,
        "membership_id": membership.id,
        "user_id": user.id,
        "token_id": token.id,
        "job_id": job.id,
        "message_id": message.id,
        "event_id": event.id,
        "campaign_id": campaign.id,
        "template_id": template.id,
    }


def _object_rules(app):
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".")[0]
        if blueprint in STAFF_BLUEPRINTS and rule.arguments:
            yield rule


def test_every_object_url_of_another_library_is_404(app, client, db, other_library):
    mine = make_library(db)
    make_club(db, mine)
    login(client, make_user(db, mine, Role.ADMIN))
    token = csrf_token(client, "/clubs")
    checked = 0
    for rule in _object_rules(app):
        missing = set(rule.arguments) - set(other_library)
        assert not missing, f"{rule.rule}: no object of library B for {missing}"
        url = rule.build(other_library, append_unknown=False)[1]
        for method in sorted(rule.methods & {"GET", "POST"}):
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(
                    url, data={"csrf_token": token, "status": "bounced"}
                )
            assert response.status_code == 404, (
                f"{method} {url}: {response.status_code}"
            )
            checked += 1
    assert checked >= 8
    # Nothing of library B changed.
    assert db.session.get(Subscriber, other_library["subscriber_id"]) is not None
    assert (
        db.session.get(Membership, other_library["membership_id"]).status == "confirmed"
    )
    assert db.session.get(ApiToken, other_library["token_id"]).revoked_at is None
    campaign = db.session.get(Campaign, other_library["campaign_id"])
    assert campaign.subject == "Geheim" and campaign.version == 1
    assert db.session.get(Template, other_library["template_id"]) is not None


def test_lists_show_only_the_own_library(client, db, other_library):
    mine = make_library(db)
    make_club(db, mine, slug="vip", name="VIP-klubben")
    login(client, make_user(db, mine, Role.ADMIN))
    clubs = client.get("/clubs").get_data(as_text=True)
    assert "VIP-klubben" in clubs and "Debatclub" not in clubs
    outbox = client.get("/outbox/").get_data(as_text=True)
    assert "b@example.nl" not in outbox
    users = client.get("/users").get_data(as_text=True)
    assert "utrecht" not in users
    assert "Geheim" not in client.get("/events").get_data(as_text=True)
    assert "B</a>" not in client.get("/templates").get_data(as_text=True)
    own_club = db.session.scalar(select(Club).where(Club.library_id == mine.id))
    search = client.get(f"/clubs/{own_club.id}?q=geheim").get_data(as_text=True)
    assert "geheim@example.nl" not in search


def test_consortium_admin_sees_member_libraries_only(client, db, other_library):
    consortium = Consortium(name="Nord", slug="nord")
    db.session.add(consortium)
    db.session.commit()
    herning = make_library(db, consortium_id=consortium.id)
    make_club(db, herning, slug="vip", name="VIP-klubben")
    utrecht_club = db.session.get(
        Club, other_library["club_id"]
    )  # not in the consortium
    admin = make_user(db, None, Role.CONSORTIUM_ADMIN, consortium_id=consortium.id)
    login(client, admin)
    assert "VIP-klubben" in client.get("/clubs").get_data(as_text=True)
    assert client.get(f"/clubs/{utrecht_club.id}").status_code == 404
    response = client.post(
        "/library",
        data={
            "library_id": utrecht_club.library_id,
            "csrf_token": csrf_token(client, "/clubs"),
        },
    )
    assert response.status_code == 404

    utrecht_club.library.consortium_id = consortium.id
    db.session.commit()
    client.post(
        "/library",
        data={
            "library_id": utrecht_club.library_id,
            "csrf_token": csrf_token(client, "/clubs"),
        },
    )
    assert "Debatclub" in client.get("/clubs").get_data(as_text=True)
    assert client.get(f"/clubs/{utrecht_club.id}").status_code == 200
