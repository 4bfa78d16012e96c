"""The OpenAPI 3.1 description of the campaign endpoints (paths and schemas).

`PATHS` and `SCHEMAS` are merged into the API's one document.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_STRING_OR_NULL = {"type": ["string", "null"]}
_URL_OR_NULL = {"type": ["string", "null"], "format": "uri"}


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Malformed JSON",
        401: "No valid token",
        403: "The role does not allow it",
        404: "No such object in the libraries you see",
        409: "Version conflict or not a draft",
        413: "Body too large",
        415: "Not JSON",
        422: "An invalid field (named in `field`)",
    }
    return {str(c): {"description": texts[c], **_json(_ERROR)} for c in codes}


def _list_of(name: str) -> dict[str, Any]:
    return _json(
        {
            "type": "object",
            "properties": {"items": {"type": "array", "items": _ref(name)}},
            "required": ["items"],
        }
    )


_READ = (401, 404)
_WRITE = (400, 401, 403, 404, 413, 415, 422)

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
}

_EVENT = ["events"]
_CAMPAIGN = ["campaigns"]

PATHS: dict[str, Any] = {
    "/api/events": {
        "get": {
            "tags": _EVENT,
            "summary": "List events",
            "parameters": [
                {"name": "library_id", "in": "query", "schema": {"type": "integer"}}
            ],
            "responses": {"200": {"description": "Events", **_list_of("Event")}},
        },
        "post": {
            "tags": _EVENT,
            "summary": "Record an event",
            "requestBody": {"required": True, **_json(_ref("EventInput"))},
            "responses": {
                "201": {"description": "Created", **_json(_ref("Event"))},
                **_errors(*_WRITE),
            },
        },
    },
    "/api/events/{event_id}": {
        "parameters": [_id("event_id")],
        "get": {
            "tags": _EVENT,
            "summary": "One event",
            "responses": {
                "200": {"description": "The event", **_json(_ref("Event"))},
                **_errors(*_READ),
            },
        },
        "patch": {
            "tags": _EVENT,
            "summary": "Change an event",
            "requestBody": {"required": True, **_json(_ref("EventInput"))},
            "responses": {
                "200": {"description": "Changed", **_json(_ref("Event"))},
                **_errors(*_WRITE),
            },
        },
        "delete": {
            "tags": _EVENT,
            "summary": "Delete an event",
            "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)},
        },
    },
    "/api/templates": {
        "get": {
            "tags": _CAMPAIGN,
            "summary": "Templates a library may use",
            "parameters": [
                {"name": "library_id", "in": "query", "schema": {"type": "integer"}}
            ],
            "responses": {
                "200": {"description": "Templates", **_list_of("TemplateChoice")},
                **_errors(401, 404, 422),
            },
        }
    },
    "/api/clubs/{club_id}/campaigns": {
        "parameters": [_id("club_id")],
        "get": {
            "tags": _CAMPAIGN,
            "summary": "A club's campaigns",
            "responses": {
                "200": {"description": "Campaigns", **_list_of("Campaign")},
                **_errors(*_READ),
            },
        },
        "post": {
            "tags": _CAMPAIGN,
            "summary": "Start a draft",
            "requestBody": {"required": True, **_json(_ref("CampaignInput"))},
            "responses": {
                "201": {"description": "Created", **_json(_ref("Campaign"))},
                **_errors(*_WRITE),
            },
        },
    },
    "/api/campaigns/{campaign_id}": {
        "parameters": [_id("campaign_id")],
        "get": {
            "tags": _CAMPAIGN,
            "summary": "One campaign",
            "responses": {
                "200": {"description": "The campaign", **_json(_ref("Campaign"))},
                **_errors(*_READ),
            },
        },
        "patch": {
            "tags": _CAMPAIGN,
            "summary": "Change a draft (send the version you read)",
            "requestBody": {"required": True, **_json(_ref("CampaignInput"))},
            "responses": {
                "200": {"description": "Saved", **_json(_ref("Campaign"))},
                **_errors(*_WRITE, 409),
            },
        },
        "delete": {
            "tags": _CAMPAIGN,
            "summary": "Delete a draft",
            "responses": {
                "204": {"description": "Deleted"},
                **_errors(401, 403, 404, 409),
            },
        },
    },
    "/api/campaigns/{campaign_id}/preview": {
        "parameters": [_id("campaign_id")],
        "post": {
            "tags": _CAMPAIGN,
            "summary": "Render the draft (with optional unsaved changes)",
            "requestBody": {"required": True, **_json(_ref("CampaignInput"))},
            "responses": {
                "200": {"description": "Rendered", **_json(_ref("Preview"))},
                **_errors(400, 401, 404, 415, 422),
            },
        },
    },
    "/api/campaigns/{campaign_id}/test-send": {
        "parameters": [_id("campaign_id")],
        "post": {
            "tags": _CAMPAIGN,
            "summary": "Send the saved draft as a test",
            "requestBody": {"required": True, **_json(_ref("TestSend"))},
            "responses": {
                "200": {
                    "description": "Sent (or queued for a retry)",
                    **_json(
                        {
                            "type": "object",
                            "properties": {
                                "sent": {"type": "array", "items": {"type": "string"}},
                                "queued": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                },
                            },
                        }
                    ),
                },
                **_errors(*_WRITE),
            },
        },
    },
}
