"""Browser tests: the test app served over HTTP, driven by Chromium (Playwright).

`live_server` serves the `app` fixture (same per-test database) from a thread and
yields its base URL; `page` is a fresh browser context's page on that server.
One Chromium (/usr/bin/chromium, or KLUBPOST_CHROMIUM) serves all of them. Without
it the tests are skipped, unless KLUBPOST_REQUIRE_BROWSER=1 (CI), which makes a
missing browser a failure. A failing test leaves a screenshot
and the page's HTML in tests/artifacts/.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from conftest import ARTIFACTS, PASSWORD

CHROMIUM = os.environ.get("KLUBPOST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Long enough for a loaded 2-core machine, short enough to fail fast.
TIMEOUT_MS = 15_000


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives the web pages in Chromium (tests/browser/)"
    )


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


def _unavailable(reason: str) -> None:
    if os.environ.get("KLUBPOST_REQUIRE_BROWSER") == "1":
        pytest.fail(
            f"{reason}; browser tests are required here (KLUBPOST_REQUIRE_BROWSER=1). "
            "Install it with `apt-get install chromium`.",
            pytrace=False,
        )
    pytest.skip(f"{reason} (set KLUBPOST_REQUIRE_BROWSER=1 to fail instead)")


class Chromium:
    """One headless Chromium, started for the first browser test.

    Playwright's sync API keeps an asyncio loop marked as running in the main
    thread for as long as it is started, which would break any later test that
    uses asyncio (`asyncio.run()` refuses to start). So it is stopped as soon
    as the run leaves the browser tests, and started again should it return.
    """

    def __init__(self) -> None:
        self.playwright = None
        self.browser = None

    def get(self):
        if self.browser is None:
            from playwright.sync_api import sync_playwright

            self.playwright = sync_playwright().start()
            self.browser = self.playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        return self.browser

    def stop(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.browser = None
        if self.playwright is not None:
            self.playwright.stop()
            self.playwright = None


CHROMIUM_PROCESS = Chromium()


def _is_browser_test(item) -> bool:
    return item is not None and item.get_closest_marker("browser") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield  # the test's fixtures (its page and context) are closed now
    if not _is_browser_test(nextitem):
        CHROMIUM_PROCESS.stop()
    return result


def pytest_sessionfinish(session) -> None:
    CHROMIUM_PROCESS.stop()


@pytest.fixture
def browser():
    """The shared headless Chromium (see Chromium)."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[test]')")
    return CHROMIUM_PROCESS.get()


class _QuietHandler(WSGIRequestHandler):
    """No access log: a failing test's output shows the test, not every request."""

    def log_request(self, *args, **kwargs) -> None:
        pass


class LiveServer(threading.Thread):
    """A werkzeug server for `app` on a free port, in a daemon thread."""

    def __init__(self, app) -> None:
        super().__init__(daemon=True)
        self.server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self.server.port}"

    def run(self) -> None:
        self.server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.join(timeout=5)


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The test app over HTTP; yields its base URL (no trailing slash).

    Links in mails point at it too (BASE_URL), so a test can follow them.
    """
    server = LiveServer(app)
    app.config["BASE_URL"] = server.url
    server.start()
    yield server.url
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, live_server, request):
    """A page in a fresh browser context (no cookies) on the live server."""
    context = browser.new_context(base_url=live_server, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        _save_artifacts(page, request.node.nodeid)
    context.close()


def _save_artifacts(page, nodeid: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    try:
        page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
        (ARTIFACTS / f"{stem}.html").write_text(page.content(), encoding="utf-8")
    except Exception as exc:  # the page may have crashed; keep the test's own error
        (ARTIFACTS / f"{stem}.txt").write_text(f"no screenshot: {exc}\n")


@pytest.fixture
def log_in(page):
    """Log a user in through the form, as a person does: `log_in(user)`."""

    def log_in(user, password: str = PASSWORD) -> None:
        page.goto("/login")
        page.get_by_label("E-mail").fill(user.email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/clubs")

    return log_in
