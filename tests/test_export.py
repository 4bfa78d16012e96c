"""CSV export of a club's members."""

import csv
import io

from accounts.models import Role
from conftest import login, make_club, make_library, make_subscriber, make_user
from subscribers import exports
from subscribers.services import join_club, unsubscribe


def _rows(response) -> list[list[str]]:
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")  # Excel reads UTF-8 only with a BOM
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def test_export_has_status_consent_attributes_and_neutralised_formulas(client, db):
    library = make_library(db)
    club = make_club(db, library)
    ane = make_subscriber(
        db,
        library,
        "ane@example.dk",
        first_name='=HYPERLINK("http://evil")',
        last_name="Ørsted",
        attributes={"children": "4, 7", "branch": "+Lindholm"},
    )
    bo = make_subscriber(db, library, "bo@example.dk", last_name="-Bo", attributes={})
    join_club(
        db.session,
        club,
        ane,
        source="form",
        tracking_consent=True,
        consent_given=True,
        own_sign_up=True,
    )
    unsubscribe(join_club(db.session, club, bo, source="staff:1", consent_given=True))
    other = make_club(db, library, slug="vip")
    join_club(
        db.session, other, make_subscriber(db, library, "vip@example.dk"), source="t"
    )
    db.session.commit()
    login(client, make_user(db, library, Role.EDITOR))

    response = client.get(f"/clubs/{club.id}/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    header, first, second = _rows(response)
    assert header[:6] == [
        "email",
        "first_name",
        "last_name",
        "language",
        "status",
        "tracking_consent",
    ]
    assert header[-2:] == ["branch", "children"]
    row = dict(zip(header, first, strict=True))
    assert row["email"] == "ane@example.dk"
    assert row["first_name"] == '\'=HYPERLINK("http://evil")'
    assert row["last_name"] == "Ørsted"
    assert row["branch"] == "'+Lindholm" and row["children"] == "4, 7"
    assert (row["status"], row["tracking_consent"], row["consent_source"]) == (
        "confirmed",
        "yes",
        "form",
    )
    assert row["consent_text_version"] == "1" and row["confirmed_at"]
    row = dict(zip(header, second, strict=True))
    assert row["email"] == "bo@example.dk" and row["last_name"] == "'-Bo"
    assert row["status"] == "unsubscribed" and row["unsubscribed_at"]
    assert "vip@example.dk" not in response.get_data(as_text=True)


def test_export_is_streamed_in_keyset_pages(client, db, monkeypatch):
    library = make_library(db)
    club = make_club(db, library)
    for n in range(7):
        person = make_subscriber(db, library, f"p{n}@example.dk", attributes={"n": n})
        join_club(db.session, club, person, source="t", consent_given=True)
    db.session.commit()
    pages = []
    real = exports.export_rows

    def small_pages(session, club_id, batch=exports.BATCH):
        return real(session, club_id, batch=3)

    monkeypatch.setattr("subscribers.import_views.export_rows", small_pages)
    from sqlalchemy import event

    @event.listens_for(db.engine, "before_cursor_execute")
    def count_pages(conn, cursor, statement, parameters, context, executemany):
        if "FROM membership JOIN subscriber" in statement:
            pages.append(statement)

    login(client, make_user(db, library, Role.EDITOR))
    response = client.get(f"/clubs/{club.id}/export.csv")
    assert response.is_streamed
    rows = _rows(response)
    event.remove(db.engine, "before_cursor_execute", count_pages)
    assert [r[0] for r in rows[1:]] == [f"p{n}@example.dk" for n in range(7)]
    assert rows[0][-1] == "n" and rows[7][-1] == "6"
    # Per status, pages of 3 until an empty one: 1 + 4 + 1 + 1 queries, once for
    # the attribute names and once for the rows.
    assert len(pages) == 14
    assert all("LIMIT" in page for page in pages)


def test_staff_cannot_export_and_other_library_gets_404(client, db):
    library = make_library(db)
    club = make_club(db, library)
    login(client, make_user(db, library, Role.STAFF))
    assert client.get(f"/clubs/{club.id}/export.csv").status_code == 403
    other = make_club(db, make_library(db, slug="utrecht", language="nl"))
    login(client, make_user(db, library, Role.EDITOR))
    assert client.get(f"/clubs/{other.id}/export.csv").status_code == 404
