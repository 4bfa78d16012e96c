"""Every machine rule, with the requests those machines really make."""

from datetime import UTC, datetime, timedelta

import pytest

from tracking.machines import classify_click, classify_open

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SENT = NOW - timedelta(hours=3)
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
FIREFOX = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0"
)
THUNDERBIRD = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.4.2"
)


@pytest.mark.parametrize(
    ("method", "agent", "ip", "reason"),
    [
        ("GET", THUNDERBIRD, "192.0.2.10", "human"),
        ("GET", IPHONE_MAIL, "2001:db8::1", "human"),
        (
            "GET",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18129)",
            "192.0.2.10",
            "human",
        ),
        ("GET", "Mozilla/5.0", "17.58.101.4", "apple_privacy_proxy"),
        ("GET", "Mozilla/5.0", "203.0.113.9", "apple_privacy_proxy"),
        ("GET", IPHONE_MAIL, "17.123.4.5", "apple_privacy_proxy"),
        (
            "GET",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
            "(via ggpht.com GoogleImageProxy)",
            "66.249.84.1",
            "google_image_proxy",
        ),
        (
            "GET",
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            None,
            "yahoo_image_proxy",
        ),
        ("HEAD", FIREFOX, "192.0.2.10", "head_request"),
        ("GET", "", "192.0.2.10", "no_user_agent"),
        ("GET", "python-requests/2.32.3", "192.0.2.10", "known_scanner"),
    ],
)
def test_open_verdicts(method, agent, ip, reason):
    verdict = classify_open(method, agent, ip, sent_at=SENT, now=NOW)
    assert verdict.reason == reason
    assert verdict.human is (reason == "human")


def test_an_open_within_seconds_of_sending_is_a_machine():
    verdict = classify_open(
        "GET", FIREFOX, "192.0.2.1", sent_at=NOW - timedelta(seconds=2), now=NOW
    )
    assert verdict.reason == "too_soon_after_sending" and not verdict.human


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        (FIREFOX, "human"),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel (EE))", "known_scanner"),
        ("Mimecast-URL-Protect/1.0", "known_scanner"),
        (
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.5)",
            "known_scanner",
        ),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "known_scanner",
        ),
        ("curl/8.5.0", "known_scanner"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/120.0.0.0 Safari/537.36",
            "known_scanner",
        ),
    ],
)
def test_click_verdicts_by_user_agent(agent, reason):
    verdict = classify_click("GET", agent, link_id=1, sent_at=SENT, now=NOW)
    assert verdict.reason == reason


def test_honeypot_link_is_always_a_machine_even_with_a_browser_agent():
    verdict = classify_click("GET", FIREFOX, honeypot=True, link_id=9, now=NOW)
    assert verdict == classify_click("GET", "", honeypot=True, link_id=9, now=NOW)
    assert verdict.reason == "honeypot_link" and not verdict.human


def test_head_click_is_a_machine():
    assert classify_click("HEAD", FIREFOX, link_id=1, now=NOW).reason == "head_request"


def test_several_links_of_one_message_within_two_seconds_is_a_scanner_burst():
    recent = [(1, NOW - timedelta(milliseconds=900)), (2, NOW - timedelta(seconds=1))]
    burst = classify_click("GET", FIREFOX, link_id=3, recent_clicks=recent, now=NOW)
    assert burst.reason == "scanner_burst"


def test_a_person_clicking_two_links_or_slowly_is_human():
    two = [(1, NOW - timedelta(seconds=1))]
    slow = [(1, NOW - timedelta(seconds=40)), (2, NOW - timedelta(seconds=20))]
    same_link = [(3, NOW - timedelta(seconds=1)), (3, NOW - timedelta(seconds=0.5))]
    for recent in (two, slow, same_link):
        verdict = classify_click(
            "GET", FIREFOX, link_id=3, recent_clicks=recent, now=NOW
        )
        assert verdict.human, recent


def test_a_click_seconds_after_sending_is_a_machine():
    verdict = classify_click(
        "GET", FIREFOX, link_id=1, sent_at=NOW - timedelta(seconds=1), now=NOW
    )
    assert verdict.reason == "too_soon_after_sending"
