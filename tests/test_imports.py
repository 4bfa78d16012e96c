from sqlalchemy import func, select

from conftest import make_club, make_library, make_subscriber
from subscribers.imports import ImportRecord, import_records, one_of
from subscribers.models import Membership, MembershipStatus, Subscriber
from subscribers.services import erase, join_club, unsubscribe


def test_import_records_reports_every_row(db):
    library = make_library(db)
    club = make_club(db, library)
    member = make_subscriber(db, library, "member@example.dk")
    join_club(db.session, club, member, source="t", consent_given=True)
    gone = make_subscriber(db, library, "gone@example.dk")
    unsubscribe(join_club(db.session, club, gone, source="t", consent_given=True))
    make_subscriber(db, library, "known@example.dk", first_name="Known")
    erase(db.session, make_subscriber(db, library, "erased@example.dk"))
    db.session.commit()

    records = [
        ImportRecord(2, "new@example.dk", "Ny", tracking_consent=True),
        ImportRecord(3, "not an address"),
        ImportRecord(4, "NEW@example.dk"),
        ImportRecord(5, "member@example.dk"),
        ImportRecord(6, "gone@example.dk"),
        ImportRecord(7, "Known@Example.dk", "Other name"),
        ImportRecord(8, "erased@example.dk"),
        ImportRecord(9, "lang@example.dk", language="xx"),
    ]
    report = import_records(
        db.session, club, records, consent_given=True, source="import"
    )
    db.session.commit()

    assert report.counts == {
        "imported": 2,
        "invalid_email": 1,
        "duplicate": 1,
        "already_member": 1,
        "unsubscribed": 1,
        "suppressed": 1,
        "invalid_row": 1,
    }
    assert [i["row"] for i in report.issues] == [3, 4, 9, 5, 6, 8]
    new = db.session.scalar(
        select(Subscriber).where(Subscriber.email_key == "new@example.dk")
    )
    assert new.first_name == "Ny"
    (membership,) = new.memberships
    assert (
        membership.status == MembershipStatus.CONFIRMED and membership.tracking_consent
    )
    known = db.session.scalar(
        select(Subscriber).where(Subscriber.email_key == "known@example.dk")
    )
    assert known.first_name == "Known"  # existing people are not overwritten
    assert known.memberships[0].club_id == club.id
    gone_status = db.session.scalar(
        select(Membership.status).where(Membership.subscriber_id == gone.id)
    )
    assert gone_status == MembershipStatus.UNSUBSCRIBED


def test_every_imported_membership_belongs_to_the_person_of_its_row(db):
    library = make_library(db)
    club = make_club(db, library)
    other = make_library(db, "utrecht")
    for n in range(3):  # ids of another library's people sit between ours
        make_subscriber(db, other, f"p{n}@example.dk")
        make_subscriber(db, library, f"known{n}@example.dk")
    db.session.commit()
    records = [
        ImportRecord(n + 2, f"P{n}@example.dk", f"First {n}", f"Last {n}")
        for n in range(6)
    ] + [ImportRecord(9, "known1@example.dk", "Not used")]

    report = import_records(db.session, club, records, consent_given=True, source="i")
    db.session.commit()

    assert report.counts == {"imported": 7}
    members = db.session.execute(
        select(Subscriber.email, Subscriber.first_name, Subscriber.last_name)
        .join(Membership, Membership.subscriber_id == Subscriber.id)
        .where(Membership.club_id == club.id, Subscriber.library_id == library.id)
        .order_by(Subscriber.email)
    ).all()
    assert [tuple(m) for m in members] == [
        ("P0@example.dk", "First 0", "Last 0"),
        ("P1@example.dk", "First 1", "Last 1"),
        ("P2@example.dk", "First 2", "Last 2"),
        ("P3@example.dk", "First 3", "Last 3"),
        ("P4@example.dk", "First 4", "Last 4"),
        ("P5@example.dk", "First 5", "Last 5"),
        ("known1@example.dk", "", ""),
    ]


def test_import_without_consent_leaves_members_unconfirmed(db):
    library = make_library(db)
    club = make_club(db, library)
    import_records(
        db.session,
        club,
        [ImportRecord(2, "a@example.dk")],
        consent_given=False,
        source="i",
    )
    db.session.commit()
    assert db.session.scalar(select(Membership.status)) == MembershipStatus.UNCONFIRMED
    assert db.session.scalar(select(func.count()).select_from(Membership)) == 1


ADDRESSES = [
    "anna@example.dk",
    "Anna.Berg@EXAMPLE.DK",
    "o'neil+news@mail.example.nl",
    "a!#$%&'*+/=?^_`{|}~-@example.com",
    "  padded@example.dk  ",
    "x" * 64 + "@example.dk",
    "x" * 65 + "@example.dk",
    "a..b@example.dk",
    ".a@example.dk",
    "a.@example.dk",
    "a@b",
    "a@localhost",
    "a@example..dk",
    "a@-example.dk",
    "a@example.invalid",
    "a@example.test",
    "a@[127.0.0.1]",
    "a@exa mple.dk",
    "søren@example.dk",
    "anna@bücher.example",
    "anna@xn--bcher-kva.example",
    '"quoted"@example.dk',
    "no-at-sign",
    "two@@example.dk",
    "a@b@example.dk",
    "",
    "a@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + "." + "g" * 50 + ".dk",
    "Anna <anna@example.dk>",
]


def test_fast_address_check_agrees_with_email_validator(app):
    from subscribers.imports import fast_normalize_email
    from subscribers.services import InvalidAddress, normalize_email

    for raw in ADDRESSES:
        try:
            expected = normalize_email(raw)
        except InvalidAddress as exc:
            expected = ("refused", exc.message)
        try:
            got = fast_normalize_email(raw)
        except InvalidAddress as exc:
            got = ("refused", exc.message)
        assert got == expected, raw


def test_names_with_tabs_quotes_and_line_breaks_are_stored_exactly(db):
    library = make_library(db)
    club = make_club(db, library)
    tricky = 'Tab\there, back\\slash, "quoted"\nnew line\r\nand \\N'
    # Names refuse line breaks (see below); attributes keep them.
    tricky_name = 'Tab\there, back\\slash, "quoted" and \\N'
    import_records(
        db.session,
        club,
        [
            ImportRecord(
                2,
                "tricky@example.dk",
                tricky_name,
                "Ø",
                attributes={"note": tricky, "empty": ""},
            )
        ],
        consent_given=True,
        source="import",
    )
    db.session.commit()
    db.session.expire_all()
    person = db.session.scalar(select(Subscriber))
    assert person.first_name == tricky_name and person.last_name == "Ø"
    assert person.attributes == {"note": tricky, "empty": ""}


def test_line_breaks_in_names_are_reported_per_row_as_everywhere_else(db):
    library = make_library(db)
    club = make_club(db, library)
    report = import_records(
        db.session,
        club,
        [
            ImportRecord(2, "a@example.dk", "Ane\nBcc: x@evil.example"),
            ImportRecord(3, "b@example.dk", "Bo", "Holm\r"),
            ImportRecord(4, "c@example.dk", "Carl"),
        ],
        consent_given=True,
        source="import",
    )
    db.session.commit()
    assert report.counts == {"imported": 1, "invalid_row": 2}
    assert [(i["row"], i["outcome"]) for i in report.issues] == [
        (2, "invalid_row"),
        (3, "invalid_row"),
    ]
    assert "line break" in report.issues[0]["message"]
    assert db.session.scalars(select(Subscriber.email)).all() == ["c@example.dk"]


def test_looking_up_addresses_finds_exactly_the_listed_keys(db):
    library = make_library(db)
    for address in ("a@example.dk", "b@example.dk", "c@example.dk"):
        make_subscriber(db, library, address)
    db.session.commit()

    def found(keys):
        return set(
            db.session.scalars(
                select(Subscriber.email_key).where(
                    one_of(db.session, Subscriber.email_key, keys)
                )
            )
        )

    assert found(["a@example.dk", "c@example.dk", "x@example.dk"]) == {
        "a@example.dk",
        "c@example.dk",
    }
    # A text with a line break is one value, not two.
    assert found(["a@example.dk\nb@example.dk", "c@example.dk"]) == {"c@example.dk"}
    assert found(["A@example.dk", ""]) == set()  # keys are compared exactly
    assert found([]) == set()
