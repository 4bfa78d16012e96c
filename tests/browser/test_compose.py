"""Composing a newsletter in the browser: template, live preview, autosave, test."""

from playwright.sync_api import expect
from sqlalchemy import select

from accounts.models import Role
from campaigns import services
from campaigns.models import Campaign
from conftest import make_club, make_library, make_user


def _library_with_event(db):
    library = make_library(db, name="Herning Bibliotekerne")
    club = make_club(db, library, name="Her er debat")
    services.create_event(
        db.session,
        library,
        {
            "title": "Forfatteraften med Anna",
            "starts_at": "2026-12-03T19:30",
            "venue": "Hovedbiblioteket",
            "ticket_url": "https://billet.example.dk/42",
            "club_ids": [club.id],
        },
    )
    db.session.commit()
    return library, club


def test_editor_composes_previews_and_sends_a_test(db, page, log_in):
    library, club = _library_with_event(db)
    log_in(make_user(db, library, Role.EDITOR))
    page.get_by_role("link", name="Her er debat").click()
    page.get_by_role("link", name="Newsletters").click()
    page.get_by_role("link", name="New newsletter").click()
    page.get_by_label("Kind").select_option("before_event")
    page.get_by_label("Event").select_option(
        label="2026-12-03 19:30 · Forfatteraften med Anna"
    )
    page.get_by_label("Subject", exact=True).fill("Kom til forfatteraften")
    page.get_by_role("button", name="Start writing").click()

    desktop = page.frame_locator("#preview-desktop")
    phone = page.frame_locator("#preview-phone")
    expect(desktop.get_by_text("Forfatteraften med Anna").first).to_be_visible()
    expect(phone.get_by_text("Forfatteraften med Anna").first).to_be_visible()

    # Typing changes the preview (after a short pause) and autosaves the draft.
    page.locator(".block-text textarea").first.fill("Vi ses til en hyggelig aften!")
    expect(desktop.get_by_text("Vi ses til en hyggelig aften!")).to_be_visible()
    page.get_by_role("button", name="Button").click()
    page.locator(".block-button input").nth(0).fill("Book en plads")
    page.locator(".block-button input").nth(1).fill("https://billet.example.dk/42")
    expect(desktop.get_by_role("link", name="Book en plads")).to_be_visible()
    expect(page.locator("#save-status[data-state=saved]")).to_contain_text("Saved")
    campaign = db.session.scalar(select(Campaign))
    db.session.refresh(campaign)
    assert campaign.blocks[0]["text"] == "Vi ses til en hyggelig aften!"
    assert campaign.blocks[-1]["label"] == "Book en plads"

    # A broken MJML edit shows the error with its line; the last preview stays.
    page.locator("#edit-mjml").check()
    expect(page.locator("#custom-mjml")).not_to_have_value("")
    page.locator("#custom-mjml").fill("<mjml>\n<mj-body>\n{% if %}\n</mj-body></mjml>")
    expect(page.locator("#preview-error")).to_contain_text("Line 3")
    expect(desktop.get_by_text("Vi ses til en hyggelig aften!")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#edit-mjml").uncheck()
    expect(page.locator("#preview-error")).to_be_hidden()

    page.get_by_label("Send a test to").fill("redaktion@example.dk")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_text("Test sent to redaktion@example.dk.")).to_be_visible()
    page.get_by_role("link", name="Outbox").click()
    page.get_by_role("link", name="[TEST] Kom til forfatteraften").click()
    expect(page.get_by_text("Vi ses til en hyggelig aften!").first).to_be_visible()


def test_a_second_editor_gets_a_conflict_and_keeps_their_text(
    db, browser, live_server, page, log_in
):
    library, club = _library_with_event(db)
    first = make_user(db, library, Role.EDITOR)
    second = make_user(db, library, Role.EDITOR, email="anden@herning.example.dk")
    campaign = services.create_campaign(
        db.session, club, first, {"kind": "regular", "subject": "Nyt"}
    )
    db.session.commit()
    log_in(first)
    page.goto(f"/campaigns/{campaign.id}")

    other = browser.new_context(base_url=live_server, locale="en-GB")
    other_page = other.new_page()
    other_page.goto("/login")
    other_page.get_by_label("E-mail").fill(second.email)
    other_page.get_by_label("Password").fill("correct horse battery")
    other_page.get_by_role("button", name="Log in").click()
    other_page.goto(f"/campaigns/{campaign.id}")
    other_page.get_by_label("Subject", exact=True).fill("Deres emne")
    expect(other_page.locator("#save-status[data-state=saved]")).to_be_visible()
    other.close()

    page.get_by_label("Subject", exact=True).fill("Mit emne")
    expect(page.locator("#conflict")).to_contain_text("Someone else saved this draft")
    expect(page.get_by_label("Subject", exact=True)).to_have_value("Mit emne")
    db.session.refresh(campaign)
    assert campaign.subject == "Deres emne"
    page.get_by_role("button", name="Save mine over theirs").click()
    expect(page.locator("#save-status[data-state=saved]")).to_be_visible()
    db.session.refresh(campaign)
    assert campaign.subject == "Mit emne"
