"""Staff in the browser: members, clubs, and what each role may touch."""

from playwright.sync_api import expect
from sqlalchemy import select

from accounts.models import Role
from conftest import (
    make_club,
    make_library,
    make_subscriber,
    make_user,
    outbox_messages,
)
from subscribers.models import Club, Membership, MembershipStatus, Subscriber
from subscribers.services import join_club


def _club_with_members(db):
    library = make_library(db, name="Herning Bibliotekerne")
    club = make_club(db, library, name="Her er debat")
    for email, first, last in [
        ("bo.hansen@example.dk", "Bo", "Hansen"),
        ("karen.bo@example.dk", "Karen", "Bo"),
        ("mette@example.dk", "Mette", "Nielsen"),
    ]:
        person = make_subscriber(db, library, email, first_name=first, last_name=last)
        join_club(db.session, club, person, source="test", consent_given=True)
    db.session.commit()
    return library, club


def test_editor_lists_and_searches_a_clubs_members(db, page, log_in):
    library, _club = _club_with_members(db)
    log_in(make_user(db, library, Role.EDITOR))
    page.get_by_role("link", name="Her er debat").click()
    rows = page.locator("#members tbody tr")
    expect(page.get_by_text("3 members")).to_be_visible()
    expect(rows).to_have_count(3)

    page.get_by_role("searchbox", name="Search").fill("mette")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("1 member", exact=True)).to_be_visible()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("mette@example.dk")
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("mette")

    page.get_by_role("searchbox", name="Search").fill("nobody-here")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_text(["No members found."])


def test_editor_adds_a_member_and_sees_them_listed(db, page, log_in):
    library, club = _club_with_members(db)
    log_in(make_user(db, library, Role.EDITOR))
    page.goto(f"/clubs/{club.id}")
    page.get_by_role("link", name="Add member").click()
    expect(page.get_by_role("heading")).to_have_text("Add member to Her er debat")

    page.get_by_label("E-mail").fill("not an address")
    page.get_by_role("button", name="Add").click()
    expect(page.locator(".has-error .error")).to_be_visible()
    assert db.session.scalar(select(Subscriber).filter_by(first_name="Sofie")) is None

    page.get_by_label("E-mail").fill("Sofie@Example.dk")
    page.get_by_label("First name").fill("Sofie")
    page.get_by_label("Last name").fill("Holm")
    page.get_by_label("This person has already given consent").check()
    page.get_by_role("button", name="Add").click()

    expect(page.get_by_role("status")).to_have_text("Added as a confirmed member.")
    expect(page.get_by_text("4 members")).to_be_visible()
    row = page.locator("#members tbody tr", has_text="Sofie Holm")
    expect(row).to_contain_text("Sofie@example.dk")
    expect(row).to_contain_text("confirmed")

    # Without consent the person gets a confirmation mail and waits, unconfirmed.
    page.get_by_role("link", name="Add member").click()
    page.get_by_label("E-mail").fill("jens@example.dk")
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("status")).to_have_text(
        "Added. A confirmation mail has been sent."
    )
    expect(
        page.locator("#members tbody tr", has_text="jens@example.dk")
    ).to_contain_text("unconfirmed")
    (mail,) = outbox_messages(db)
    assert mail["To"] == "jens@example.dk"


def test_admin_creates_a_club_and_opens_its_sign_up_page(db, page, log_in):
    library = make_library(db, name="Herning Bibliotekerne")
    log_in(make_user(db, library, Role.ADMIN))
    page.get_by_role("link", name="New club").click()
    page.get_by_label("Name", exact=True).fill("Familieklubben")
    page.get_by_label("Short name in links").fill("familie")
    page.get_by_label("Description").fill("For børn og voksne")
    page.get_by_label("Language").select_option("da")
    page.get_by_label("Sender name").fill("Familieklubben")
    page.get_by_label("Sender address").fill("familie@herning.example.dk")
    expect(page.get_by_label("New members confirm by e-mail")).to_be_checked()
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_have_text("Club created.")
    expect(page.get_by_role("heading", name="Familieklubben")).to_be_visible()
    club = db.session.scalar(select(Club).filter_by(slug="familie"))
    assert club.library_id == library.id and club.double_opt_in

    page.get_by_role("link", name="Clubs", exact=True).click()
    expect(page.locator("table.list tbody tr")).to_contain_text(["Familieklubben"])

    page.goto(f"/clubs/{club.id}")
    page.locator("a[href='/join/herning/familie']").click()
    expect(page.get_by_role("heading", name="Familieklubben")).to_be_visible()
    expect(page.get_by_role("button", name="Tilmeld")).to_be_visible()


def test_admin_sees_a_clear_error_for_a_taken_short_name(db, page, log_in):
    library = make_library(db)
    make_club(db, library, slug="debat")
    log_in(make_user(db, library, Role.ADMIN))
    page.goto("/clubs/new")
    page.get_by_label("Name", exact=True).fill("Debat igen")
    page.get_by_label("Short name in links").fill("debat")
    page.get_by_label("Sender name").fill("Debat")
    page.get_by_label("Sender address").fill("debat@herning.example.dk")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".has-error")).to_contain_text("Short name in links")
    assert len(db.session.scalars(select(Club)).all()) == 1


def test_staff_reads_but_sees_no_edit_buttons(db, page, log_in):
    library, club = _club_with_members(db)
    log_in(make_user(db, library, Role.STAFF))
    expect(page.get_by_role("link", name="New club")).to_have_count(0)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)

    page.get_by_role("link", name="Her er debat").click()
    expect(page.locator("#members tbody tr")).to_have_count(3)
    expect(page.get_by_role("link", name="Add member")).to_have_count(0)
    expect(page.get_by_role("link", name="Settings")).to_have_count(0)

    page.get_by_role("link", name="mette@example.dk").click()
    expect(page.get_by_role("heading", name="Mette Nielsen")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_attribute("readonly", "")
    expect(page.locator("main").get_by_role("button")).to_have_count(0)

    response = page.goto(f"/clubs/{club.id}/members/new")
    assert response.status == 403
    membership = db.session.scalar(
        select(Membership).join(Subscriber).filter_by(email="mette@example.dk")
    )
    assert membership.status == MembershipStatus.CONFIRMED
