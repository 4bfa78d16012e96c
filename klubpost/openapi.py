"""The OpenAPI 3.1 description of the JSON API, built from the real routes.

Each API view carries its description (`describe`); `build_document` walks the
app's URL map, so a route without a description fails loudly instead of going
undocumented. The request schemas here are also what the API checks bodies with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask

API_PREFIX = "/api/"
LANGUAGE = {"type": "string", "enum": ["da", "nl", "en"]}
STATUS = {
    "type": "string",
    "enum": ["unconfirmed", "confirmed", "unsubscribed", "bounced"],
}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}


def _text(max_length: int, nullable: bool = False) -> dict[str, Any]:
    return {
        "type": ["string", "null"] if nullable else "string",
        "maxLength": max_length,
    }


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _list_of(item: str, *, keyset: bool = True) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}}
    }
    if keyset:
        properties.update(
            limit={"type": "integer"},
            next_after={
                "type": ["integer", "null"],
                "description": "Pass as `after` for the next page; null on the last.",
            },
            page={"type": "integer"},
            pages={"type": "integer"},
            total={"type": "integer"},
        )
    return {"type": "object", "properties": properties, "required": ["items"]}


CLUB_SETTINGS = {
    "name": _text(200),
    "slug": {**_text(64), "pattern": "^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"},
    "description": _text(5000),
    "language": LANGUAGE,
    "from_name": _text(200),
    "from_email": {**_text(320), "format": "email"},
    "reply_to": {**_text(320, nullable=True), "format": "email"},
    "double_opt_in": {"type": "boolean", "default": True},
    "tracking_consent_required": {"type": "boolean", "default": True},
    "tracking_mode": {
        "type": "string",
        "enum": ["off", "anonymous", "individual"],
        "default": "individual",
        "description": "off: plain links, no pixel; anonymous: counts per link and "
        "campaign naming nobody; individual: per member (with "
        "tracking_consent_required, only members who consented).",
    },
    "public_archive": {"type": "boolean", "default": False},
    "consent_text": _text(2000),
    "tracking_text": _text(2000),
}

SUBSCRIBER_FIELDS = {
    "email": {**_text(320), "format": "email"},
    "first_name": _text(200),
    "last_name": _text(200),
    "language": LANGUAGE,
    "attributes": {
        "type": "object",
        "maxProperties": 50,
        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    },
}

IMPORT_RECORD = _object(
    {
        "email": _text(320),
        "first_name": _text(200),
        "last_name": _text(200),
        "language": LANGUAGE,
        "tracking_consent": {"type": "boolean"},
        "attributes": SUBSCRIBER_FIELDS["attributes"],
    },
    ("email",),
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                },
            }
        },
    },
    "Library": _object(
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "slug": {"type": "string"},
            "domain": {"type": "string"},
            "language": LANGUAGE,
            "timezone": {"type": "string"},
            "consortium_id": {"type": ["integer", "null"]},
        }
    ),
    "Club": _object(
        {
            "id": {"type": "integer"},
            "library_id": {"type": "integer"},
            **CLUB_SETTINGS,
            "consent_text_version": {"type": "integer"},
            "counts": {
                "type": "object",
                "description": "Members per status.",
                "additionalProperties": {"type": "integer"},
            },
            "created_at": TIMESTAMP,
        }
    ),
    "ClubCreate": _object(
        {"library_id": {"type": "integer"}, **CLUB_SETTINGS},
        ("name", "slug", "from_name", "from_email"),
    ),
    "ClubUpdate": _object(CLUB_SETTINGS, minProperties=1),
    "Subscriber": _object(
        {
            "id": {"type": "integer"},
            "library_id": {"type": "integer"},
            **SUBSCRIBER_FIELDS,
            "memberships": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Membership"},
            },
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        }
    ),
    "SubscriberCreate": _object(
        {"library_id": {"type": "integer"}, **SUBSCRIBER_FIELDS}, ("email",)
    ),
    "SubscriberUpdate": _object(SUBSCRIBER_FIELDS, minProperties=1),
    "SubscriberData": {
        "type": "object",
        "description": "Everything the library holds about the person.",
    },
    "Membership": _object(
        {
            "id": {"type": "integer"},
            "club_id": {"type": "integer"},
            "subscriber_id": {"type": "integer"},
            "email": {"type": "string"},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "status": STATUS,
            "tracking_consent": {"type": "boolean"},
            "consent": _object(
                {
                    "source": {"type": "string"},
                    "consent_text_version": {"type": ["integer", "null"]},
                    "submitted_at": TIMESTAMP,
                    "confirmed_at": NULLABLE_TIMESTAMP,
                    "unsubscribed_at": NULLABLE_TIMESTAMP,
                    "ip_truncated": {"type": ["string", "null"]},
                }
            ),
            "confirmation_sent": {"type": "boolean"},
        }
    ),
    "MembershipCreate": _object(
        {
            "subscriber_id": {"type": "integer"},
            **SUBSCRIBER_FIELDS,
            "consent_given": {
                "type": "boolean",
                "default": False,
                "description": "Consent was given elsewhere (e.g. a paper form): "
                "confirmed at once, no confirmation mail.",
            },
            "tracking_consent": {"type": "boolean", "default": False},
        },
        description="Either `subscriber_id` or `email` (a new or known person).",
    ),
    "MembershipUpdate": _object(
        {"status": STATUS, "tracking_consent": {"type": "boolean"}},
        minProperties=1,
    ),
    "ImportRecord": IMPORT_RECORD,
    "ImportRequest": _object(
        {
            "records": {
                "type": "array",
                "maxItems": 10_000,
                "items": {"$ref": "#/components/schemas/ImportRecord"},
            },
            "consent_given": {"type": "boolean", "default": False},
        },
        ("records",),
    ),
    "ImportJob": _object(
        {
            "id": {"type": "integer"},
            "club_id": {"type": "integer"},
            "status": {
                "type": "string",
                "enum": ["uploaded", "queued", "running", "done", "failed"],
            },
            "filename": {"type": "string"},
            "consent_given": {"type": "boolean"},
            "total_rows": {"type": "integer"},
            "processed_rows": {"type": "integer"},
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "Rows per outcome; for unconfirmed new members also "
                "`mails_pending` and `mails_queued`.",
            },
            "error": {"type": ["string", "null"]},
            "created_at": TIMESTAMP,
            "started_at": NULLABLE_TIMESTAMP,
            "finished_at": NULLABLE_TIMESTAMP,
            "issues": {
                "type": "array",
                "items": _object(
                    {
                        "row": {"type": "integer"},
                        "email": {"type": "string"},
                        "outcome": {"type": "string"},
                        "message": {"type": "string"},
                    }
                ),
            },
        }
    ),
    "LibraryList": _list_of("Library", keyset=False),
    "ClubList": _list_of("Club", keyset=False),
    "SubscriberList": _list_of("Subscriber"),
    "MembershipList": _list_of("Membership"),
}


def _campaign_schemas() -> dict[str, Any]:
    from campaigns.openapi import SCHEMAS as campaign_schemas
    from tracking.openapi import SCHEMAS as statistics_schemas

    return campaign_schemas | statistics_schemas


# One document: the campaign and statistics endpoints' schemas join these.
SCHEMAS.update(_campaign_schemas())

ERROR_STATUSES = {
    400: "Malformed JSON.",
    401: "Missing, unknown or revoked token.",
    403: "The token's user lacks the role.",
    404: "No such object, or another library's.",
    409: "Conflicts with what is stored (duplicate, erased address, status rule).",
    413: "Body or record list too large.",
    415: "The body is not application/json.",
    422: "A field is invalid; `field` names it.",
}


def describe(
    summary: str,
    *,
    role: str,
    response: str | None = None,
    status: int = 200,
    body: str | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
    raw_body: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach an OpenAPI operation description to an API view.

    `raw_body` names a media type accepted besides the JSON `body` (as is).
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        view.openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "role": role,
            "response": response,
            "status": status,
            "body": body,
            "query": query or {},
            "errors": errors,
            "raw_body": raw_body,
        }
        return view

    return decorator


PATH_ARGUMENT = re.compile(r"<(?:(\w+):)?(\w+)>")


def _path(rule: str) -> tuple[str, list[str]]:
    names = [m.group(2) for m in PATH_ARGUMENT.finditer(rule)]
    return PATH_ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", rule), names


def _operation(endpoint: str, doc: dict[str, Any], path_args: list[str]) -> dict:
    params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "integer"}}
        for n in path_args
    ]
    params += [
        {"name": n, "in": "query", "required": False, **spec}
        for n, spec in doc["query"].items()
    ]
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "Success."}
    if doc["response"]:
        ok["content"] = {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{doc['response']}"}
            }
        }
    responses[str(doc["status"])] = ok
    codes = set(doc["errors"])
    if doc["role"] != "anyone":
        codes.update({401, 403})
    if path_args:
        codes.add(404)
    if doc["body"]:
        codes.update({400, 413, 415, 422})
    if doc["query"]:
        codes.add(422)
    if "library_id" in doc["query"]:
        codes.add(404)
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    operation: dict[str, Any] = {
        "operationId": endpoint.split(".", 1)[1],
        "summary": doc["summary"],
        "description": f"Needs the role `{doc['role']}` or higher.",
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if doc["body"]:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{doc['body']}"}
                }
            },
        }
        if doc.get("raw_body"):
            content = operation["requestBody"]["content"]
            content[doc["raw_body"]] = {"schema": {"type": "string"}}
    if doc["role"] == "anyone":
        operation["security"] = []
        operation["description"] = "Needs no token."
    return operation


def api_operations(app: Flask) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (OpenAPI path, lower-case method) the app serves under /api/."""
    operations = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        view = app.view_functions[rule.endpoint]
        doc = getattr(view, "openapi", None)
        path, args = _path(rule.rule)
        if doc is None:
            raise LookupError(f"{rule.endpoint} has no OpenAPI description")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operations[(path, method.lower())] = _operation(rule.endpoint, doc, args)
    return operations


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's JSON API."""
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in sorted(api_operations(app).items()):
        paths.setdefault(path, {})[method] = operation
    error = {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Klubpost API",
            "version": "1",
            "description": "Libraries, clubs, subscribers, memberships, bulk "
            "import, events, templates, campaigns and their statistics. "
            "See docs/api.md.",
        },
        "servers": [{"url": app.config["BASE_URL"]}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal token (kp_...) from the Tokens page.",
                }
            },
            "schemas": SCHEMAS,
            "responses": {
                f"E{code}": {"description": text, **error}
                for code, text in ERROR_STATUSES.items()
            },
        },
    }
