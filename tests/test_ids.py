"""Ids that links carry are never given to another row (SQLite AUTOINCREMENT)."""

import pytest
from flask_migrate import upgrade
from sqlalchemy import select, text

from conftest import TEST_DATABASE_URL, make_club, make_library, make_subscriber
from klubpost import create_app
from klubpost.db import db as _db
from klubpost.security import sign
from subscribers.models import Membership, Subscriber
from subscribers.services import erase, join_club

sqlite_only = pytest.mark.skipif(
    bool(TEST_DATABASE_URL), reason="PostgreSQL sequences never reuse ids"
)


def test_an_erased_persons_link_never_opens_the_next_new_subscriber(client, db):
    herning = make_library(db)
    utrecht = make_library(db, slug="utrecht", language="nl")
    club = make_club(db, utrecht)
    make_subscriber(db, herning, "first@example.dk")
    newest = make_subscriber(db, herning, "ida@example.dk", first_name="Ida")
    old_manage = sign("manage", newest.id)
    old_unsubscribe = sign("unsubscribe", newest.id, club.id)
    erase(db.session, newest)
    db.session.commit()

    stranger = make_subscriber(db, utrecht, "jan@example.nl", first_name="Jan")
    join_club(db.session, club, stranger, source="test", consent_given=True)
    db.session.commit()

    for path in (
        f"/preferences/{old_manage}",
        f"/preferences/{old_manage}/data.json",
        f"/unsubscribe/{old_unsubscribe}",
    ):
        response = client.get(path)
        assert response.status_code in (404, 410), path
        assert "Jan" not in response.get_data(as_text=True)
        assert "jan@example.nl" not in response.get_data(as_text=True)


def test_a_deleted_membership_id_is_not_reused(client, db):
    library = make_library(db)
    club = make_club(db, library)
    first = make_subscriber(db, library, "ida@example.dk")
    membership = join_club(db.session, club, first, source="test")
    db.session.commit()
    old_confirm = sign("confirm", membership.id)
    erase(db.session, first)
    db.session.commit()
    second = make_subscriber(db, library, "ole@example.dk")
    join_club(db.session, club, second, source="test")
    db.session.commit()
    assert client.get(f"/confirm/{old_confirm}").status_code == 404


@sqlite_only
def test_migration_keeps_every_row_and_id_and_the_foreign_keys(tmp_path):
    """Rows made before migration 0014 keep their ids; children stay attached."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "s", "TESTING": True})
    with app.app_context():
        upgrade(revision="0011")
        library = make_library(_db)
        club = make_club(_db, library)
        people = [
            make_subscriber(_db, library, f"p{n}@example.dk", first_name=f"P{n}")
            for n in range(5)
        ]
        for person in people:
            join_club(_db.session, club, person, source="test", consent_given=True)
        _db.session.commit()
        # Gaps in the ids, as deletions leave them.
        erase(_db.session, people[1])
        _db.session.commit()
        before = _db.session.execute(
            text("SELECT id, email FROM subscriber ORDER BY id")
        ).all()
        memberships = _db.session.execute(
            text("SELECT id, subscriber_id FROM membership ORDER BY id")
        ).all()
        newest_id, first_id = before[-1][0], people[0].id
        _db.session.remove()

        upgrade()

        assert (
            _db.session.execute(
                text("SELECT id, email FROM subscriber ORDER BY id")
            ).all()
            == before
        )
        assert (
            _db.session.execute(
                text("SELECT id, subscriber_id FROM membership ORDER BY id")
            ).all()
            == memberships
        )
        assert _db.session.execute(text("PRAGMA foreign_key_check")).all() == []
        assert _db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        sql = _db.session.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'subscriber'")
        ).scalar()
        assert "AUTOINCREMENT" in sql

        # The newest person goes; the next one gets a fresh id.
        erase(_db.session, _db.session.get(Subscriber, newest_id))
        _db.session.commit()
        library = _db.session.merge(library)
        newcomer = make_subscriber(_db, library, "new@example.dk")
        assert newcomer.id > newest_id
        assert _db.session.scalar(
            select(Membership.id).where(Membership.subscriber_id == first_id)
        )
        _db.session.remove()
        _db.engine.dispose()
