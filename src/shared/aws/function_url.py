"""Lambda Function URLs' HTTP events (payload format 2.0): the request's parts in, a response out.

    request = parse(event)          # method, path, query parameters, body bytes, content type
    parts = multipart(body, type)   # [(field name, bytes)] of a multipart/form-data body
    response(status, document)      # {"statusCode", "headers", "body", "isBase64Encoded"}

The local stack builds the same events from its HTTP requests (lambdaface/local/api.py).
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from shared import errors

INVALID_BODY = "INVALID_BODY"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: bytes
    content_type: str


def parse(event: dict[str, Any]) -> Request:
    """The request of a payload format 2.0 event (a base64 body decoded)."""
    http = (event.get("requestContext") or {}).get("http") or {}
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode("utf-8")
    except (binascii.Error, ValueError):
        body = b""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    params = dict(parse_qsl(event.get("rawQueryString") or "", keep_blank_values=True))
    return Request(str(http.get("method") or "GET"), str(event.get("rawPath") or http.get("path") or "/"),
                   params, body, headers.get("content-type", ""))


def multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The parts of a multipart/form-data body: (field name, bytes), in order; FaceError INVALID_BODY."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise errors.FaceError(INVALID_BODY, "expected a multipart/form-data body with two images")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise errors.FaceError(INVALID_BODY, "the multipart body could not be read")
    parts = []
    for part in message.iter_parts():
        data = part.get_payload(decode=True)
        parts.append((str(part.get_param("name", header="content-disposition") or ""), data or b""))
    return parts


def response(status: int, document: dict[str, Any]) -> dict[str, Any]:
    """A payload format 2.0 response with a JSON body."""
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(document), "isBase64Encoded": False}
