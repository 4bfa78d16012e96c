"""The OpenAPI schemas of the campaign endpoints (events, campaigns, previews).

They join the API's one document (klubpost.openapi); each view in campaigns/api.py
names its body and response schema here.
"""

from __future__ import annotations

from typing import Any

from campaigns.models import Repeat

REPEATS = [r.value for r in Repeat]
_STRING_OR_NULL = {"type": ["string", "null"]}
_URL_OR_NULL = {"type": ["string", "null"], "format": "uri"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref(name)}},
        "required": ["items"],
    }


SCHEMAS: dict[str, Any] = {
    "Material": {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "url": {"type": "string", "format": "uri"},
            "tag": _STRING_OR_NULL,
        },
        "required": ["label", "url"],
    },
    "EventInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "library_id": {"type": "integer"},
            "title": {"type": "string", "maxLength": 200},
            "description": {"type": "string"},
            "starts_at": {
                "type": "string",
                "description": "ISO 8601; without an offset: the library's time",
            },
            "ends_at": _STRING_OR_NULL,
            "venue": {"type": "string"},
            "image_url": _URL_OR_NULL,
            "ticket_url": _URL_OR_NULL,
            "club_ids": {"type": "array", "items": {"type": "integer"}},
            "materials": {"type": "array", "items": _ref("Material")},
        },
    },
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "library_id": {"type": "integer"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "starts_at": {"type": "string", "format": "date-time"},
            "ends_at": {"type": ["string", "null"], "format": "date-time"},
            "timezone": {"type": "string"},
            "venue": {"type": "string"},
            "image_url": _URL_OR_NULL,
            "ticket_url": _URL_OR_NULL,
            "club_ids": {"type": "array", "items": {"type": "integer"}},
            "materials": {"type": "array", "items": _ref("Material")},
        },
    },
    "TemplateChoice": {
        "type": "object",
        "properties": {
            "template": {"type": "string", "examples": ["builtin:regular-da"]},
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "language": {"type": "string"},
            "shared": {"type": "boolean"},
            "builtin": {"type": "boolean"},
        },
    },
    "Block": {
        "type": "object",
        "description": "text{heading,text}, image{url,alt,link}, button{label,url}, "
        "event{event_id}, links{title,links[{label,url,tag,track}]}",
        "properties": {
            "type": {
                "type": "string",
                "enum": ["text", "image", "button", "event", "links"],
            }
        },
        "required": ["type"],
    },
    "CampaignInput": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "kind": {
                "type": "string",
                "enum": ["before_event", "after_event", "regular"],
            },
            "event_id": {"type": ["integer", "null"]},
            "subject": {"type": "string", "maxLength": 300},
            "preheader": {"type": "string", "maxLength": 300},
            "template": {"type": "string"},
            "blocks": {"type": "array", "items": _ref("Block")},
            "custom_mjml": _STRING_OR_NULL,
            "version": {"type": "integer", "description": "required for PATCH"},
        },
    },
    "Campaign": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "club_id": {"type": "integer"},
            "kind": {"type": "string"},
            "status": {"type": "string"},
            "event_id": {"type": ["integer", "null"]},
            "subject": {"type": "string"},
            "preheader": {"type": "string"},
            "template": {"type": "string"},
            "blocks": {"type": "array", "items": _ref("Block")},
            "custom_mjml": _STRING_OR_NULL,
            "version": {"type": "integer"},
            "updated_at": {"type": "string", "format": "date-time"},
            "updated_by": _STRING_OR_NULL,
            "sent_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "Preview": {
        "type": "object",
        "properties": {
            "html": {"type": "string"},
            "text": {"type": "string"},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "html_size": {"type": "integer"},
            "subject": {"type": "string"},
        },
    },
    "TestSend": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "addresses": {
                "type": "array",
                "items": {"type": "string", "format": "email"},
                "maxItems": 5,
            },
            "subscriber_id": {"type": ["integer", "null"]},
        },
        "required": ["addresses"],
    },
    "TestSendResult": {
        "type": "object",
        "properties": {
            "sent": {"type": "array", "items": {"type": "string"}},
            "queued": {"type": "array", "items": {"type": "string"}},
        },
    },
    "EventList": _list_of("Event"),
    "CampaignList": _list_of("Campaign"),
    "TemplateList": _list_of("TemplateChoice"),
}
# A preview takes the same fields as a change, and whom to personalise it for.
SCHEMAS["PreviewInput"] = {
    **SCHEMAS["CampaignInput"],
    "properties": {
        **SCHEMAS["CampaignInput"]["properties"],
        "subscriber_id": {"type": ["integer", "null"]},
    },
}


SCHEMAS["Schedule"] = {
    "type": "object",
    "required": ["mode"],
    "properties": {
        "mode": {"enum": ["now", "fixed", "before_event", "after_event"]},
        "send_at": {
            "type": "string",
            "description": "For `fixed`: ISO 8601; without an offset it is the "
            "library's local time.",
        },
        "offset_minutes": {
            "type": "integer",
            "minimum": 0,
            "description": "For before/after_event: minutes before the start or "
            "after the end.",
        },
        "repeat": {
            "enum": [*REPEATS, None],
            "description": "Regular issues sent now or at a fixed time may repeat: "
            "when one starts sending, the next is made as a draft proposed for the "
            "next date (same local time), to be approved by scheduling it.",
        },
    },
}
SCHEMAS["Sending"] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "status": {
            "enum": ["draft", "scheduled", "sending", "paused", "sent", "cancelled"]
        },
        "schedule_mode": {"type": ["string", "null"]},
        "offset_minutes": {"type": "integer"},
        "send_at": {"type": ["string", "null"], "format": "date-time"},
        "repeat": {"enum": [*REPEATS, None]},
        "previous_issue_id": {"type": ["integer", "null"]},
        "progress": {
            "type": "object",
            "properties": {
                name: {"type": "integer"}
                for name in ("total", "sent", "failed", "bounced", "skipped", "queued")
            }
            | {
                "rate_per_s": {"type": ["number", "null"]},
                "expected_end": {"type": ["string", "null"], "format": "date-time"},
            },
        },
    },
}
SCHEMAS["BounceInput"] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "description": "One bounce or complaint as an HTTP mail provider reports it. "
    "Name the mail by `message_id` (ours), or the member by `email` (found only "
    "in the token's libraries).",
    "properties": {
        "type": {"enum": ["bounce", "complaint"]},
        "email": {"type": "string", "maxLength": 320, "format": "email"},
        "status": {
            "type": "string",
            "maxLength": 16,
            "description": "For a bounce: the enhanced status code, e.g. 5.1.1; "
            "4.x.x is temporary, 5.7.x a policy refusal.",
        },
        "diagnostic": {"type": "string", "maxLength": 1000},
        "message_id": {"type": "string", "maxLength": 255},
    },
}
SCHEMAS["BounceResult"] = {
    "type": "object",
    "properties": {
        "report_id": {"type": ["integer", "null"]},
        "duplicate": {
            "type": "boolean",
            "description": "The same report came before; nothing was changed.",
        },
        "ignored": {
            "type": ["string", "null"],
            "description": "Why nothing was done: `auto-reply`.",
        },
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["hard", "soft", "policy", "complaint"]},
                    "email": {"type": "string"},
                    "status": {"type": "string"},
                    "diagnostic": {"type": "string"},
                    "action": {
                        "enum": [
                            "bounced",
                            "unsubscribed",
                            "counted",
                            "reported",
                            "recorded",
                            "unmatched",
                        ],
                        "description": "What was done: the member bounced or "
                        "unsubscribed, a temporary failure counted, a policy "
                        "refusal reported to staff, only recorded (the member "
                        "was not confirmed), or no mail of ours found.",
                    },
                    "send_id": {"type": ["integer", "null"]},
                    "campaign_id": {"type": ["integer", "null"]},
                },
            },
        },
    },
}
