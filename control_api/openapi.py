"""The OpenAPI 3.1 description of the control API, served at /api/v1/openapi.json.

Written by hand next to the handlers and built from the same constants, so limits and
patterns cannot drift apart; tests drive the API from this document and check every
response against it.
"""

from __future__ import annotations

import copy
from typing import Any

from control_api.bodies import MAX_BODY_BYTES
from control_api.errors import ErrorCode
from control_api.handlers import MAX_BLOCK_SECONDS
from control_api.keys import CHANNEL_NAME_PATTERN

API_VERSION = "1.0.0"

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(name: str) -> Json:
    return {"$ref": f"#/components/responses/{name}"}


def _object(properties: Json, description: str) -> Json:
    return {
        "type": "object",
        "description": description,
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


_NAME = {"type": "string", "pattern": CHANNEL_NAME_PATTERN, "maxLength": 64}
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"], "minimum": 0}
_NULLABLE_NUMBER = {"type": ["number", "null"], "minimum": 0}
_EPOCH = {"type": "number", "description": "Unix time, seconds"}

_SCHEMAS: Json = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {"type": "string", "enum": [code.value for code in ErrorCode]},
                    "message": {"type": "string"},
                },
                "Machine-readable code and a message for people.",
            )
        },
        "Every error response has this shape.",
    ),
    "CreateChannel": _object({"name": _NAME}, "The channel to create."),
    "Credentials": _object(
        {
            "name": _NAME,
            "stream_key": {
                "type": "string",
                "description": "Secret; shown only in this response. Goes in the encoder's "
                "stream key field.",
            },
            "rtmp_url": {"type": "string", "description": "Publish URL, without the key."},
            "playback_url": {"type": "string", "description": "HLS playlist URL."},
        },
        "A freshly issued stream key and where to use it.",
    ),
    "Channel": _object(
        {
            "name": _NAME,
            "created_at": _EPOCH,
            "key_rotated_at": _EPOCH,
            "live": {"type": "boolean", "description": "Live on this or any other node."},
            "rtmp_url": {"type": "string"},
            "playback_url": {"type": "string"},
        },
        "Public facts about a channel; never its key.",
    ),
    "ChannelList": _object(
        {"channels": {"type": "array", "items": _ref("Channel")}}, "All channels by name."
    ),
    "ValidateKey": _object({"stream_key": {"type": "string"}}, "A key to check."),
    "KeyValidation": _object(
        {
            "valid": {"type": "boolean"},
            "channel": {**_NULLABLE_STRING, "description": "The key's channel, if valid."},
        },
        "Whether the key publishes to a channel, and which.",
    ),
    "StreamStats": _object(
        {
            "channel": _NAME,
            "publisher": {"type": "string", "description": "Publisher address, host:port."},
            "started_at": _EPOCH,
            "video_codec": _NULLABLE_STRING,
            "width": _NULLABLE_INT,
            "height": _NULLABLE_INT,
            "fps": _NULLABLE_NUMBER,
            "bitrate_bps": {"type": "number", "minimum": 0},
            "keyframe_interval": {**_NULLABLE_NUMBER, "description": "Seconds."},
            "audio_codec": _NULLABLE_STRING,
            "sample_rate": _NULLABLE_INT,
            "audio_channels": _NULLABLE_INT,
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
        "A live publish as measured at ingest on the node that holds it.",
    ),
    "StreamList": _object(
        {"streams": {"type": "array", "items": _ref("StreamStats")}}, "Live streams by channel."
    ),
    "KickResult": _object(
        {
            "channel": _NAME,
            "kicked": {"type": "boolean", "description": "A publisher was disconnected."},
            "block_seconds": {"type": "number", "minimum": 0, "maximum": MAX_BLOCK_SECONDS},
        },
        "What the kick did.",
    ),
}

_ERROR_BODY = {"application/json": {"schema": _ref("Error")}}

_RESPONSES: Json = {
    "BadJson": {"description": "The body is not JSON (code invalid_json).", "content": _ERROR_BODY},
    "Unauthorized": {
        "description": "Missing or wrong bearer token (code unauthorized).",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": _ERROR_BODY,
    },
    "NotFound": {
        "description": "No such channel or live stream (codes channel_not_found, "
        "stream_not_live). A name that breaks the naming rule cannot exist, so it is a 404.",
        "content": _ERROR_BODY,
    },
    "TooLarge": {
        "description": f"The body exceeds {MAX_BODY_BYTES} bytes (code payload_too_large).",
        "content": _ERROR_BODY,
    },
    "Unprocessable": {
        "description": "Well-formed JSON of the wrong shape (invalid_body), a bad channel "
        "name (invalid_name), or a bad or unknown query parameter (invalid_query).",
        "content": _ERROR_BODY,
    },
    "StoreUnavailable": {
        "description": "The channel store cannot be reached; retry (code store_unavailable).",
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
        "content": _ERROR_BODY,
    },
}

_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": _NAME}
_CHANNEL_PARAM = {"name": "channel", "in": "path", "required": True, "schema": _NAME}
_BLOCK_PARAM = {
    "name": "block_seconds",
    "in": "query",
    "required": False,
    "description": "Refuse publishes on the channel for this many seconds (default 0).",
    "schema": {"type": "number", "minimum": 0, "maximum": MAX_BLOCK_SECONDS, "default": 0},
}


def _body(schema: str) -> Json:
    return {
        "required": True,
        "description": "A JSON object; the Content-Type header is not checked.",
        "content": {"application/json": {"schema": _ref(schema)}},
    }


_PATHS: Json = {
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document (no token needed).",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
        }
    },
    "/channels": {
        "post": {
            "operationId": "createChannel",
            "summary": "Create a channel and issue its stream key.",
            "requestBody": _body("CreateChannel"),
            "responses": {
                "201": _json(_ref("Credentials"), "Created; the key is shown only now."),
                "400": _error("BadJson"),
                "401": _error("Unauthorized"),
                "409": {
                    "description": "A channel with that name exists (code channel_exists).",
                    "content": _ERROR_BODY,
                },
                "413": _error("TooLarge"),
                "422": _error("Unprocessable"),
                "503": _error("StoreUnavailable"),
            },
        },
        "get": {
            "operationId": "listChannels",
            "summary": "List every channel.",
            "responses": {
                "200": _json(_ref("ChannelList"), "All channels."),
                "401": _error("Unauthorized"),
                "503": _error("StoreUnavailable"),
            },
        },
    },
    "/channels/{name}": {
        "parameters": [_NAME_PARAM],
        "get": {
            "operationId": "getChannel",
            "summary": "One channel and whether it is live.",
            "responses": {
                "200": _json(_ref("Channel"), "The channel."),
                "401": _error("Unauthorized"),
                "404": _error("NotFound"),
                "503": _error("StoreUnavailable"),
            },
        },
        "delete": {
            "operationId": "deleteChannel",
            "summary": "Delete the channel and its key; a live publisher is kicked.",
            "responses": {
                "204": {"description": "Deleted."},
                "401": _error("Unauthorized"),
                "404": _error("NotFound"),
                "503": _error("StoreUnavailable"),
            },
        },
    },
    "/channels/{name}/key": {
        "parameters": [_NAME_PARAM],
        "post": {
            "operationId": "rotateKey",
            "summary": "Issue a new key; the old one stops working at once and a live "
            "publisher is kicked. Any request body is ignored.",
            "responses": {
                "200": _json(_ref("Credentials"), "The new key; shown only now."),
                "401": _error("Unauthorized"),
                "404": _error("NotFound"),
                "503": _error("StoreUnavailable"),
            },
        },
    },
    "/keys/validate": {
        "post": {
            "operationId": "validateKey",
            "summary": "Check a stream key (a `?query` suffix is ignored).",
            "requestBody": _body("ValidateKey"),
            "responses": {
                "200": _json(_ref("KeyValidation"), "The verdict."),
                "400": _error("BadJson"),
                "401": _error("Unauthorized"),
                "413": _error("TooLarge"),
                "422": _error("Unprocessable"),
                "503": _error("StoreUnavailable"),
            },
        }
    },
    "/streams": {
        "get": {
            "operationId": "listStreams",
            "summary": "Every stream live on any node, with ingest health.",
            "responses": {
                "200": _json(_ref("StreamList"), "Live streams."),
                "401": _error("Unauthorized"),
            },
        }
    },
    "/streams/{channel}": {
        "parameters": [_CHANNEL_PARAM],
        "delete": {
            "operationId": "kickStream",
            "summary": "Disconnect the channel's publisher and optionally refuse its "
            "publishes for a while.",
            "description": "The publisher is closed on whichever node holds it. Without "
            "block_seconds (or with 0) the channel must be live on some node, else 404 "
            "stream_not_live. With a positive block_seconds the block is applied on every node "
            "(and nodes that start later) even when nobody is live, as long as the channel "
            "exists (else 404 channel_not_found).",
            "parameters": [_BLOCK_PARAM],
            "responses": {
                "200": _json(_ref("KickResult"), "Kicked and/or blocked."),
                "401": _error("Unauthorized"),
                "404": _error("NotFound"),
                "422": _error("Unprocessable"),
                "503": _error("StoreUnavailable"),
            },
        },
    },
}


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def build_openapi() -> Json:
    """A fresh copy of the document (callers may mutate it)."""
    document = copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "mediaserver control API",
                "version": API_VERSION,
                "description": "Manage channels and stream keys, see and kick live streams. "
                'Every error is JSON {"error": {"code", "message"}}; an unknown path is '
                "404 and a method a path does not support is 405 with an Allow header. "
                "Without a valid token every path except this document answers 401.",
            },
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearerAuth": []}],
            "paths": _PATHS,
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
                "schemas": _SCHEMAS,
                "responses": _RESPONSES,
            },
        }
    )
    # Every operation refuses unknown query parameters (control_api/query.py).
    for path_item in document["paths"].values():
        for method, operation in path_item.items():
            if method in HTTP_METHODS:
                operation["responses"].setdefault("422", _error("Unprocessable"))
    return document
