"""Reading request bodies: bounded, strict JSON objects with exactly the expected fields."""

from __future__ import annotations

import json

from aiohttp import web

from control_api.errors import ApiError, ErrorCode

# The largest valid body this API accepts is well under 1 KiB; 16 KiB leaves room for
# pretty-printed clients while keeping a hostile body from costing memory or CPU.
MAX_BODY_BYTES = 16 * 1024


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit`."""
    too_large = ApiError(
        413, ErrorCode.PAYLOAD_TOO_LARGE, f"request body must be at most {limit} bytes"
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> object:
    """Decode strict JSON (UTF-8, no NaN/Infinity), or 400 invalid_json."""
    if not body.strip():
        raise ApiError(400, ErrorCode.INVALID_JSON, "request body must be a JSON object")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(
            400, ErrorCode.INVALID_JSON, f"request body is not valid JSON: {exc}"
        ) from None


def check_fields(value: object, fields: tuple[str, ...]) -> dict[str, str]:
    """`value` as a dict holding exactly `fields`, all strings, or 422 invalid_body."""
    if not isinstance(value, dict):
        raise ApiError(422, ErrorCode.INVALID_BODY, "request body must be a JSON object")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ApiError(422, ErrorCode.INVALID_BODY, f"unknown field {unknown[0]!r}")
    checked: dict[str, str] = {}
    for name in fields:
        if name not in value:
            raise ApiError(422, ErrorCode.INVALID_BODY, f"missing field {name!r}")
        field = value[name]
        if not isinstance(field, str):
            raise ApiError(422, ErrorCode.INVALID_BODY, f"field {name!r} must be a string")
        checked[name] = field
    return checked


async def read_string_fields(request: web.Request, fields: tuple[str, ...]) -> dict[str, str]:
    """The request's JSON object body: exactly `fields`, each a string."""
    return check_fields(parse_json(await read_body(request)), fields)
