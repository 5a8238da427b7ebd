"""JSON in and out of the API, exact for money.

In: numbers with a fraction or exponent become `Decimal` (never float), NaN/Infinity are refused.
Out: `Decimal` values are written as JSON numbers with their exact digits (json can only write floats, so they go
through a sentinel string that no real value can contain: text from the database or from a request never holds NUL).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any


class JsonError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """The request body as Python values; raises JsonError with a readable reason."""
    if not body or not body.strip():
        raise JsonError("the request body is empty; a JSON object is required")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JsonError(f"the body is not UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise JsonError(f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise JsonError("invalid JSON: nested too deeply") from None
    except ValueError as error:  # e.g. an integer with more digits than Python parses
        raise JsonError(f"invalid JSON: {error}") from None


_SENTINEL = "\x00DEC:"
_SENTINEL_JSON = re.compile(r'"\\u0000DEC:([-+0-9.eE]+)"')


_PLAIN = (str, int, float, bool, type(None))


def _prepare(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k: (v if type(v) in _PLAIN else _prepare(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _PLAIN else _prepare(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _prepare(v) for k, v in value.items()}
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return _SENTINEL + format(value, "f") if -30 < value.adjusted() < 30 else _SENTINEL + str(value)
    if isinstance(value, float):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; Decimals as exact JSON numbers, dates and times as ISO 8601 strings."""
    text = json.dumps(_prepare(value), ensure_ascii=False, separators=(",", ":"))
    return _SENTINEL_JSON.sub(r"\1", text).encode("utf-8")


def canonical(value: Any) -> bytes:
    """A stable byte form for hashing (sorted keys, Decimals by their exact text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=lambda v: f"decimal:{v}" if isinstance(v, Decimal) else str(v)).encode()
