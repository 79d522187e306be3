"""Reading a request body that anyone may have written: a byte cap while reading, and a JSON parse
that turns every hostile shape into a 4xx instead of an exception.

* The cap is checked against ``Content-Length`` before anything is read, then again while the body
  streams in (a client may lie or send chunked), so a 66 MB body costs nothing past the limit.
* Integers are parsed by us: Python refuses to build an int of more than 4300 digits (ValueError),
  and an int of a few hundred digits overflows ``float()`` later (OverflowError). Long integers are
  read as floats instead, which become ``inf`` and fail the finite-number check like ``1e999`` does.
* ``NaN``/``Infinity`` are not JSON: refused here, not accepted as Python's json module does by default.
* Nesting deeper than the C parser's recursion limit raises RecursionError: a 400, not a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import HTTPException, Request

from loopml.serving.predictor import shown

__all__ = ["BodyError", "bad_base64", "parse_json", "read_body", "read_json"]

# an int of up to this many digits stays an int (ids, class labels); longer ones are read as floats
INT_DIGITS = 18


class BodyError(ValueError):
    """The body is not JSON we can read; the message says why in one line."""


def _parse_int(text: str) -> int | float:
    digits = len(text) - (text[0] == "-")
    return int(text) if digits <= INT_DIGITS else float(text)


def _no_constants(name: str) -> Any:
    raise BodyError(f"{name} is not valid JSON (send null for an unknown value)")


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, or BodyError naming the problem. Never anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BodyError(f"body is not UTF-8 (byte {err.start})") from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_constant=_no_constants)
    except json.JSONDecodeError as err:
        raise BodyError(f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise BodyError("body is nested too deeply") from None
    except BodyError:
        raise
    except ValueError as err:  # anything else the decoder refuses
        raise BodyError(f"body is not valid JSON: {shown(str(err))}") from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "content-length is not a number")
        if int(declared) > max_bytes:
            raise HTTPException(413, f"body of {declared} bytes is over the {max_bytes} byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body is over the {max_bytes} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body's JSON value: 415 unless the content type is JSON, 413 over ``max_bytes``, 400 if unreadable."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, f"expected content-type application/json, got {shown(ctype) if ctype else 'none'}")
    raw = await read_body(request, max_bytes)
    try:
        return parse_json(raw)
    except BodyError as err:
        raise HTTPException(400, str(err)) from None


def bad_base64(event: dict[str, Any]) -> dict[str, Any] | None:
    """A Lambda proxy response (400) for a body flagged ``isBase64Encoded`` that is not base64;
    Mangum would raise on it. None when the event is fine."""
    body = event.get("body")
    if not event.get("isBase64Encoded") or not body:
        return None
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return {"statusCode": 400, "headers": {"content-type": "application/json"}, "isBase64Encoded": False,
                "body": json.dumps({"detail": "body is flagged isBase64Encoded but is not valid base64"})}
    return None
