"""Logging in and out in the browser."""

from playwright.sync_api import expect

from accounts.models import Role
from conftest import PASSWORD, make_library, make_user


def test_editor_logs_in_and_out(db, page):
    library = make_library(db)
    editor = make_user(db, library, Role.EDITOR, name="Ella Editor")
    page.goto("/clubs")
    expect(page).to_have_url("/login?next=%2Fclubs", ignore_case=True)
    page.get_by_label("E-mail").fill(editor.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Clubs")).to_be_visible()
    expect(page.locator("header")).to_contain_text("Ella Editor")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto("/clubs")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_wrong_password_shows_an_error_and_logs_nobody_in(db, page):
    library = make_library(db)
    editor = make_user(db, library, Role.EDITOR)
    page.goto("/login")
    page.get_by_label("E-mail").fill(editor.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("status")).to_have_text("Wrong e-mail address or password.")
    expect(page.get_by_label("E-mail")).to_have_value(editor.email)
    page.goto("/clubs")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_log_in_fixture_lands_on_the_clubs(db, page, log_in):
    library = make_library(db, name="Herning Bibliotekerne")
    log_in(make_user(db, library, Role.STAFF))
    expect(page.locator("header")).to_contain_text("Herning Bibliotekerne")
