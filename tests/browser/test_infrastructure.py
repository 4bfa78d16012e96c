"""The browser-test machinery itself."""

import asyncio

from browser.conftest import CHROMIUM_PROCESS
from conftest import make_club, make_library


def test_asyncio_runs_again_once_chromium_is_stopped(browser):
    assert browser.is_connected()
    CHROMIUM_PROCESS.stop()  # what happens when the run leaves the browser tests
    assert not browser.is_connected()

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(answer()) == 42
    assert CHROMIUM_PROCESS.get().is_connected()  # and back for the next test


def test_the_live_server_serves_the_tests_database_and_mail_links(
    db, page, live_server, app
):
    make_club(db, make_library(db), name="Her er debat")
    assert app.config["BASE_URL"] == live_server
    response = page.goto(f"{live_server}/join/herning/debat")
    assert response.status == 200
    assert page.locator("h1").inner_text() == "Her er debat"
