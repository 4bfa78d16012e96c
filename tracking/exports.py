"""The statistics tables as CSV rows: a header, then one row per line of the table.

Column names are stable English identifiers (like the API's field names) so a
spreadsheet or script that reads them keeps working in every language. Times
are ISO 8601 in UTC; rates are fractions (0.25 is 25 %), empty when unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from tracking.stats import (
    FIGURES,
    RATES,
    CampaignSummary,
    Engagement,
    InterestRow,
    LinkRow,
    ReasonRow,
    Timeline,
    TrendRow,
)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def summary_rows(summary: CampaignSummary) -> Iterator[list[Any]]:
    """The campaign's figures and rates, one per row."""
    yield ["figure", "value"]
    for name in FIGURES:
        yield [name, summary.figures[name]]
    for name, value in summary.rates.items():
        yield [name, _rate(value)]


def link_rows(links: Iterable[LinkRow]) -> Iterator[list[Any]]:
    """The campaign's links in newsletter order with their clicks."""
    yield [
        "position",
        "label",
        "tag",
        "url",
        "clicks_human",
        "clicks_machine",
        "unique_clicks_human",
        "unique_clicks_machine",
    ]
    for link in links:
        yield [
            link.position,
            link.label,
            link.tag or "",
            link.url,
            link.clicks_human,
            link.clicks_machine,
            link.unique_clicks_human,
            link.unique_clicks_machine,
        ]


def timeline_rows(timeline: Timeline) -> Iterator[list[Any]]:
    """Clicks per hour, then per local day."""
    yield ["bucket", "start_utc", f"local_{timeline.zone}", "human", "machine"]
    for size, bucket in timeline.buckets:
        yield [size, _iso(bucket.start), bucket.label, bucket.human, bucket.machine]


def reason_rows(reasons: Iterable[ReasonRow]) -> Iterator[list[Any]]:
    """Opens and clicks per verdict reason."""
    yield ["reason", "opens", "clicks"]
    for row in reasons:
        yield [row.reason, row.opens, row.clicks]


def trend_rows(trends: Iterable[TrendRow]) -> Iterator[list[Any]]:
    """One row per campaign of the club, newest first."""
    yield ["campaign_id", "subject", "started_at", *FIGURES, *RATES]
    for row in trends:
        yield [
            row.campaign_id,
            row.subject,
            _iso(row.started_at),
            *(row.figures[name] for name in FIGURES),
            *(_rate(value) for value in row.rates.values()),
        ]


def interest_rows(interests: Iterable[InterestRow]) -> Iterator[list[Any]]:
    """Human clicks per link tag."""
    yield ["tag", "clicks", "unique_clicks"]
    for row in interests:
        yield [row.tag or "", row.clicks, row.unique_clicks]


def engagement_rows(rows: Iterable[Engagement]) -> Iterator[list[Any]]:
    """A member's engagement per club; clubs without consent show only why."""
    yield [
        "club",
        "shown",
        "received",
        "opened",
        "clicked",
        "last_activity",
        "tags",
    ]
    for row in rows:
        if row.hidden:
            yield [row.club_name, f"no ({row.hidden})", "", "", "", "", ""]
            continue
        tags = "; ".join(f"{tag or '-'}: {count}" for tag, count in row.tags)
        yield [
            row.club_name,
            "yes",
            row.received,
            row.opened,
            row.clicked,
            _iso(row.last_activity),
            tags,
        ]
