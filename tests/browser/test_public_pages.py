"""A person's way through the public pages, in the club's language, in Chromium."""

from playwright.sync_api import expect
from sqlalchemy import select

from conftest import links_in, make_club, make_library, outbox_messages
from subscribers.models import Membership, MembershipStatus, Subscriber
from subscribers.public import unsubscribe_token

CONSENT_DA = "Ja tak, send mig nyhedsbreve fra Her er debat"


def _membership(db) -> Membership:
    db.session.expire_all()  # the pages changed it in another session
    return db.session.scalar(select(Membership))


def test_sign_up_confirm_preferences_unsubscribe(db, page, live_server):
    library = make_library(db, name="Herning Bibliotekerne", language="da")
    club = make_club(db, library, name="Her er debat")

    # The sign-up form speaks Danish, whatever the browser's language.
    page.goto("/join/herning/debat")
    expect(page.locator("html")).to_have_attribute("lang", "da")
    expect(page.get_by_role("heading", name="Her er debat")).to_be_visible()
    page.get_by_label("E-mail").fill("ole@example.dk")
    page.get_by_label("Fornavn").fill("Ole")
    page.get_by_role("button", name="Tilmeld").click()
    expect(page.locator(".has-error")).to_contain_text(
        "Sæt kryds i feltet for at tilmelde dig."
    )
    assert outbox_messages(db) == []

    page.get_by_label(CONSENT_DA).check()
    page.get_by_role("button", name="Tilmeld").click()
    expect(page.get_by_role("heading", name="Tjek din indbakke")).to_be_visible()
    assert _membership(db).status == MembershipStatus.UNCONFIRMED

    # The mail, read as a mail client does; its link leads to this server.
    (mail,) = outbox_messages(db)
    assert mail["To"] == "ole@example.dk"
    assert mail["Subject"] == "Bekræft venligst: Her er debat"
    confirm_link = next(url for url in links_in(mail) if "/confirm/" in url)
    assert confirm_link.startswith(live_server + "/confirm/")

    # Opening the link only asks; the button confirms.
    page.goto(confirm_link)
    expect(page.get_by_role("heading", name="Bekræft din tilmelding")).to_be_visible()
    assert _membership(db).status == MembershipStatus.UNCONFIRMED
    page.get_by_role("button", name="Bekræft min tilmelding").click()
    expect(page.get_by_text("Din tilmelding er bekræftet. Tak!")).to_be_visible()
    membership = _membership(db)
    assert membership.status == MembershipStatus.CONFIRMED
    assert membership.confirmed_at is not None

    # Preferences: a new last name, English, and clicks may be seen.
    page.get_by_role("link", name="Dine indstillinger og dine data").click()
    expect(page.get_by_role("heading", name="Dine indstillinger")).to_be_visible()
    expect(page.get_by_label("Fornavn")).to_have_value("Ole")
    expect(page.get_by_label("Tilmeldt Her er debat")).to_be_checked()
    page.get_by_label("Efternavn").fill("Olsen")
    page.get_by_label("Sprog").select_option("en")
    page.get_by_label("Måling for Her er debat").check()
    page.get_by_role("button", name="Gem").click()
    expect(page.get_by_role("status")).to_have_text("Your preferences are saved.")
    expect(page.get_by_label("Last name")).to_have_value("Olsen")
    membership = _membership(db)
    person = db.session.scalar(select(Subscriber))
    assert (person.last_name, person.language) == ("Olsen", "en")
    assert membership.tracking_consent is True
    assert membership.status == MembershipStatus.CONFIRMED

    # The unsubscribe link of a newsletter: the page changes nothing, the button does.
    page.goto(f"/unsubscribe/{unsubscribe_token(person.id, club.id)}")
    expect(page.get_by_role("heading")).to_have_text("Unsubscribe from Her er debat")
    assert _membership(db).status == MembershipStatus.CONFIRMED
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    assert _membership(db).status == MembershipStatus.UNSUBSCRIBED

    page.goto(f"/unsubscribe/{unsubscribe_token(person.id, club.id)}")
    expect(page.get_by_text("You are not subscribed to Her er debat.")).to_be_visible()
    expect(page.get_by_role("button", name="Unsubscribe")).to_have_count(0)


def test_a_dutch_club_signs_up_in_dutch(db, page):
    library = make_library(
        db, "utrecht", name="Bibliotheek Utrecht", language="nl", domain="utrecht.nl"
    )
    make_club(db, library, slug="vip", name="VIP-club")
    page.goto("/join/utrecht/vip")
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    page.get_by_label("E-mail").fill("anne@example.nl")
    page.get_by_label("Ja, stuur mij nieuwsbrieven van VIP-club").check()
    page.get_by_role("button", name="Aanmelden").click()
    expect(page.get_by_role("heading", name="Kijk in je inbox")).to_be_visible()
    (mail,) = outbox_messages(db)
    assert mail["To"] == "anne@example.nl"
    assert mail["Subject"] == "Graag bevestigen: VIP-club"


def test_a_tampered_link_gets_a_clear_page(db, page, live_server):
    library = make_library(db)
    make_club(db, library)
    page.goto("/join/herning/debat")
    page.get_by_label("E-mail").fill("ole@example.dk")
    page.get_by_label(CONSENT_DA).check()
    page.get_by_role("button", name="Tilmeld").click()
    expect(page.get_by_role("heading", name="Tjek din indbakke")).to_be_visible()
    (mail,) = outbox_messages(db)
    link = next(url for url in links_in(mail) if "/confirm/" in url)
    response = page.goto(link[:-3] + "xyz")
    assert response.status == 400
    expect(page.locator("main")).to_contain_text("This link is not valid")
    assert _membership(db).status == MembershipStatus.UNCONFIRMED
