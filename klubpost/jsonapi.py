"""The JSON API's plumbing: bodies, checks against the schemas, roles, pages.

Every failure here becomes an `ApiError`, so a client always gets
`{"error": {"code", "message", "field"}}` with a 4xx status, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, g, request
from flask_babel import gettext as _
from sqlalchemy import func, select
from werkzeug.exceptions import RequestEntityTooLarge

from accounts.models import Role, User
from klubpost import db as database
from klubpost.auth import allowed_library_ids, user_for_token
from klubpost.db import MAX_ID, MAX_PAGE, db
from klubpost.errors import ApiError
from klubpost.i18n import use_language
from klubpost.openapi import SCHEMAS

DEFAULT_MAX_BODY = 16 * 1024 * 1024
MAX_PAGE_SIZE = 200


class Invalid(Exception):
    """A value that does not fit its schema; `field` is the dotted path to it."""

    def __init__(self, code: str, message: str, field: str | None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def max_body() -> int:
    """The largest request body the API reads, in bytes."""
    return int(current_app.config.get("API_MAX_BODY_BYTES", DEFAULT_MAX_BODY))


def too_large() -> ApiError:
    """The error for a body over the limit."""
    return ApiError(
        413,
        "too_large",
        _(
            "The request body is larger than %(count)d bytes; send fewer records "
            "per request.",
            count=max_body(),
        ),
    )


def limit_body() -> None:
    """Refuse a body over the limit before reading it (and while reading it)."""
    request.max_content_length = max_body()
    if (request.content_length or 0) > max_body():
        raise too_large()


def authenticate() -> None:
    """Let the request through only with a valid, unrevoked personal token (401)."""
    user = user_for_token(request.headers.get("Authorization"))
    if user is None:
        raise ApiError(
            401,
            "unauthorized",
            _("A valid API token is required (Authorization: Bearer kp_...)."),
        )
    g.api_user = user
    g.pop("api_library_ids", None)  # tests and the CLI may share an app context
    use_language(user.language)


def api_user() -> User:
    """The user whose token authenticated this request."""
    return g.api_user


def require_role(role: Role) -> User:
    """The token's user, if their role includes `role`; else 403."""
    user = api_user()
    if not user.has_role(role):
        raise ApiError(
            403,
            "forbidden",
            _("This needs the %(role)s role or higher.", role=role.value),
        )
    return user


def visible_library_ids() -> list[int]:
    """The libraries the token's user may see."""
    if "api_library_ids" not in g:
        g.api_library_ids = allowed_library_ids(api_user())
    return g.api_library_ids


def check_visible(library_id: int | None, message: str, field: str | None = None):
    """404 unless the library is one the user may see."""
    if library_id is None or library_id not in visible_library_ids():
        raise ApiError(404, "not_found", message, field)


def found(obj: Any, library_id: int | None, message: str) -> Any:
    """`obj` if it exists and belongs to a library the user may see; else 404."""
    if obj is None:
        raise ApiError(404, "not_found", message)
    check_visible(library_id, message)
    return obj


def get_by_id(model: type, object_id: int) -> Any:
    """A row by primary key, or None (also for ids no row can have)."""
    return database.get_by_id(db.session, model, object_id)


def json_body(schema_name: str, shallow: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's JSON object, checked against a schema of klubpost.openapi.

    The items of the `shallow` lists are left for the caller to check.
    """
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            _("Send the body as JSON, with Content-Type: application/json."),
        )
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise too_large() from exc
    if request.content_length is None and len(raw) >= max_body():
        # A chunked body is cut off at the limit rather than refused.
        raise too_large()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, "malformed_json", _("The body is not valid JSON (UTF-8).")
        ) from exc
    try:
        schema = SCHEMAS[schema_name]
        if shallow:
            properties = dict(schema["properties"])
            for name in shallow:
                properties[name] = {"type": properties[name]["type"]}
            schema = {**schema, "properties": properties}
        check(body, schema)
    except Invalid as exc:
        raise ApiError(422, exc.code, exc.message, exc.field) from exc
    return body


def check(value: Any, schema: dict[str, Any], field: str | None = None) -> None:
    """Check a decoded JSON value against the subset of JSON Schema we use."""
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    types = schema.get("type")
    if types is not None:
        _check_type(value, [types] if isinstance(types, str) else types, field)
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(
            "invalid",
            _("Must be one of: %(values)s.", values=", ".join(schema["enum"])),
            field,
        )
    if isinstance(value, str) and "\x00" in value:  # PostgreSQL refuses NUL in text
        raise Invalid(
            "invalid", _("Contains a NUL character, which is not allowed."), field
        )
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        raise Invalid(
            "invalid",
            _("At most %(count)d characters.", count=schema["maxLength"]),
            field,
        )
    if isinstance(value, dict):
        _check_object(value, schema, field)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            check(item, schema["items"], f"{field}[{index}]")


def _check_type(value: Any, types: list[str], field: str | None) -> None:
    kinds = {
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
    if any(kinds[t](value) for t in types):
        if "integer" in types and isinstance(value, int) and abs(value) > MAX_ID:
            raise Invalid("invalid", _("The number is too large."), field)
        return
    if field is None:
        raise Invalid("invalid", _("The body must be a JSON object."), None)
    messages = {
        "string": _("Must be text."),
        "boolean": _("Must be true or false."),
        "integer": _("Must be a whole number."),
        "object": _("Must be an object of names and values."),
        "array": _("Must be a list."),
    }
    raise Invalid("invalid", messages.get(types[0], _("Must be text.")), field)


def _check_object(value: dict, schema: dict[str, Any], field: str | None) -> None:
    properties = schema.get("properties", {})
    prefix = f"{field}." if field else ""
    extra = schema.get("additionalProperties", True)
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise Invalid(
            "invalid",
            _("At most %(count)d attributes.", count=schema["maxProperties"]),
            field,
        )
    for name, item in value.items():
        if "\x00" in name:
            raise Invalid(
                "invalid", _("Contains a NUL character, which is not allowed."), field
            )
        if name in properties:
            check(item, properties[name], prefix + name)
        elif extra is False:
            raise Invalid("unknown_field", _("This field is not known."), prefix + name)
        elif isinstance(extra, dict):
            check(item, extra, prefix + name)
    for name in schema.get("required", ()):
        if name not in value:
            raise Invalid("required", _("This field is required."), prefix + name)
    if len(value) < schema.get("minProperties", 0):
        raise Invalid("required", _("Give at least one field to change."), field)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]; else 422 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(
            422,
            "invalid",
            _(
                "Must be a whole number from %(low)d to %(high)d.",
                low=low,
                high=high,
            ),
            name,
        )
    return int(raw)


def paginate(stmt, id_column, serialize) -> dict[str, Any]:
    """One page of a select(): keyset (`after`, the default) or numbered (`page`)."""
    limit = int_arg("limit", 50, 1, MAX_PAGE_SIZE)
    stmt = stmt.order_by(None)
    if "page" in request.args:
        page = int_arg("page", 1, 1, MAX_PAGE)
        total = db.session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = db.session.scalars(
            stmt.order_by(id_column).offset((page - 1) * limit).limit(limit)
        ).all()
        return {
            "items": [serialize(row) for row in rows],
            "limit": limit,
            "page": page,
            "pages": max(1, -(-total // limit)),
            "total": total,
        }
    after = int_arg("after", 0, 0, MAX_ID)
    rows = db.session.scalars(
        stmt.where(id_column > after).order_by(id_column).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [serialize(row) for row in rows],
        "limit": limit,
        "next_after": rows[-1].id if more else None,
    }
