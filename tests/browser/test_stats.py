"""A staff user reads a campaign's statistics: the chart is drawn, the CSV downloads."""

import csv
import io
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import expect
from test_stats import STARTED, add_links, count, sent_campaign

from accounts.models import Role
from conftest import make_club, make_library, make_user


def test_staff_sees_the_click_chart_and_downloads_the_links(db, page, log_in):
    library = make_library(db, name="Herning Bibliotekerne")
    club = make_club(db, library, name="Her er debat")
    campaign = sent_campaign(
        db,
        club,
        subject="Efterårets bøger",
        delivered=200,
        tracked=100,
        unique_opens_human=40,
        unique_clicks_human=10,
    )
    links = add_links(db, campaign, (1, "Ny krimi", "book"), (2, "Billetter", "ticket"))
    start = STARTED.replace(minute=0)
    count(db, campaign, start + timedelta(hours=1), 6, links[1], uniques=5)
    count(db, campaign, start + timedelta(hours=3), 3, links[2], uniques=3)
    count(db, campaign, start + timedelta(hours=3), 4, links[2], reason="scanner_burst")

    log_in(make_user(db, library, Role.STAFF))
    page.get_by_role("link", name="Her er debat").click()
    page.get_by_role("link", name="Newsletters").click()
    page.get_by_role("link", name="Statistics").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Statistics: Efterårets bøger"
    )
    expect(page.locator("#rate-click-through")).to_have_text("5.0 %")
    chart = page.get_by_role("img", name="Clicks per hour, first two days")
    expect(chart).to_be_visible()
    bars = chart.locator("rect.bar")
    expect(bars).to_have_count(3)  # two hours of people, one of machines
    for index in range(3):
        expect(bars.nth(index)).to_be_visible()
        box = bars.nth(index).bounding_box()
        assert box["height"] > 1 and box["width"] > 1
    # The taller bar is the hour with more clicks, drawn in the site's colours.
    people = chart.locator("rect.bar.series-0")
    assert (
        people.nth(0).bounding_box()["height"] > people.nth(1).bounding_box()["height"]
    )
    fill = people.first.evaluate("e => getComputedStyle(e).fill")
    assert fill == "rgb(179, 0, 27)"  # --accent in klubpost.css
    expect(page.locator("#link-table tbody tr")).to_have_count(2)

    with page.expect_download() as info:
        page.get_by_role("link", name="Links as CSV").click()
    download = info.value
    assert download.suggested_filename == f"campaign-{campaign.id}-links.csv"
    raw = Path(download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:5] == ["position", "label", "tag", "url", "clicks_human"]
    assert rows[1][:3] == ["1", "Ny krimi", "book"] and rows[1][4] == "6"
    assert rows[2][:3] == ["2", "Billetter", "ticket"]
    assert rows[2][4:6] == ["3", "4"]
