"""Importing a CSV file in the browser: upload, mapping, progress bar, report."""

from playwright.sync_api import expect

from accounts.models import Role
from conftest import make_club, make_library, make_user
from subscribers.imports import run_pending_imports


def test_editor_imports_a_file_and_watches_it_finish(db, page, log_in, tmp_path):
    library = make_library(db, name="Herning Bibliotekerne")
    club = make_club(db, library, name="Her er debat")
    csv_file = tmp_path / "medlemmer.csv"
    csv_file.write_bytes(
        "E-mail;Fornavn;Filial\n"
        "soren@example.dk;Søren;Lindholm\n"
        "ikke-en-adresse;Bo;Vejgaard\n".encode("cp1252")
    )
    log_in(make_user(db, library, Role.EDITOR))
    page.goto(f"/clubs/{club.id}")
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Upload and choose columns").click()

    expect(
        page.get_by_role("heading", name="Choose what each column holds")
    ).to_be_visible()
    expect(page.get_by_text("2 rows, read as Windows-1252")).to_be_visible()
    expect(page.get_by_text("Søren")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value("email")
    expect(page.get_by_label("Filial")).to_have_value("attribute")
    page.get_by_label("Yes: they join as confirmed members.").check()
    page.get_by_role("button", name="Start the import").click()

    progress = page.locator("progress#import-progress")
    expect(progress).to_have_attribute("value", "0")
    run_pending_imports(db.session)  # what the scheduler does every few seconds
    # The page polls the status and, once done, shows the report.
    expect(page.get_by_role("heading", name="Report")).to_be_visible(timeout=15000)
    expect(page.locator("#counts")).to_contain_text("imported")
    expect(page.locator("#issues")).to_contain_text("ikke-en-adresse")
    expect(page.locator("progress#import-progress")).to_have_attribute("value", "2")
