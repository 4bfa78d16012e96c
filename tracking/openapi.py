"""The OpenAPI schemas of the statistics endpoints (tracking/api.py).

They join the API's one document (klubpost.openapi) like the campaign schemas.
"""

from __future__ import annotations

from typing import Any

from tracking.stats import FIGURES, RATES

_INT = {"type": "integer"}
_RATE = {
    "type": ["number", "null"],
    "description": "A fraction (0.25 is 25 %); null when there is nothing to "
    "divide by or the club counts anonymously.",
}
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_TAG = {"type": ["string", "null"], "description": "null: links without a tag"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _items(name: str, **extra: Any) -> dict[str, Any]:
    return _object({"items": {"type": "array", "items": _ref(name)}, **extra})


SCHEMAS: dict[str, Any] = {
    "StatsFigures": _object(dict.fromkeys(FIGURES, _INT)),
    "StatsRates": _object(dict.fromkeys(RATES, _RATE)),
    "StatsLink": _object(
        {
            "id": _INT,
            "position": {**_INT, "description": "Place in the newsletter, from 1"},
            "label": {"type": "string"},
            "tag": _TAG,
            "url": {"type": "string"},
            "clicks_human": _INT,
            "clicks_machine": _INT,
            "unique_clicks_human": _INT,
            "unique_clicks_machine": _INT,
        }
    ),
    "StatsReason": _object(
        {
            "reason": {
                "type": "string",
                "description": '"human", or the machine rule (apple_privacy_proxy, '
                "known_scanner, scanner_burst, honeypot_link, head_request...)",
            },
            "opens": _INT,
            "clicks": _INT,
        }
    ),
    "StatsBucket": _object(
        {
            "start": _TIME,
            "label": {"type": "string", "description": "In the library's time zone"},
            "human": _INT,
            "machine": _INT,
        }
    ),
    "CampaignStatistics": _object(
        {
            "campaign_id": _INT,
            "subject": {"type": "string"},
            "started_at": _TIME_OR_NULL,
            "updated_at": {
                **_TIME_OR_NULL,
                "description": "When the figures were last rolled up",
            },
            "anonymous": {
                "type": "boolean",
                "description": "The club counts anonymously: no unique figures, "
                "no rates",
            },
            "figures": _ref("StatsFigures"),
            "rates": _ref("StatsRates"),
            "links": {"type": "array", "items": _ref("StatsLink")},
            "reasons": {"type": "array", "items": _ref("StatsReason")},
            "timeline": _object(
                {
                    "timezone": {"type": "string"},
                    "hourly": {"type": "array", "items": _ref("StatsBucket")},
                    "daily": {"type": "array", "items": _ref("StatsBucket")},
                }
            ),
        }
    ),
    "StatsTrend": _object(
        {
            "campaign_id": _INT,
            "subject": {"type": "string"},
            "started_at": _TIME,
            "figures": _ref("StatsFigures"),
            "rates": _ref("StatsRates"),
        }
    ),
    "StatsInterest": _object(
        {
            "tag": _TAG,
            "clicks": _INT,
            "unique_clicks": _INT,
        }
    ),
    "StatsEngagement": _object(
        {
            "club_id": _INT,
            "club_name": {"type": "string"},
            "hidden": {
                "type": ["string", "null"],
                "enum": ["no_consent", "anonymous", "off", None],
                "description": "Why nothing personal is shown; then the figures "
                "are null and tags empty",
            },
            "received": {"type": ["integer", "null"]},
            "opened": {"type": ["integer", "null"]},
            "clicked": {"type": ["integer", "null"]},
            "last_activity": _TIME_OR_NULL,
            "tags": {
                "type": "array",
                "items": _object({"tag": _TAG, "clicks": _INT}),
            },
        }
    ),
}
SCHEMAS["StatsTrendList"] = _items("StatsTrend", anonymous={"type": "boolean"})
SCHEMAS["StatsInterestList"] = _items(
    "StatsInterest", days={**_INT, "description": "0: all time"}
)
SCHEMAS["StatsEngagementList"] = _items("StatsEngagement")
