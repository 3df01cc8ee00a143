"""JSON with Decimal amounts written as JSON numbers, exactly (never through a float).

Some providers (Trustless Work) put amounts in JSON numbers; the standard library can
only write a Decimal as a string, so it is written through a placeholder and unquoted."""

import json
import re
import secrets
from decimal import Decimal

# Unguessable, so that no string value can pass itself off as a number.
_MARK = f"__decimal_{secrets.token_hex(8)}__"
_PLACEHOLDER = re.compile(rf'"{_MARK}(-?[0-9]+(?:\.[0-9]+)?)"')


def _encode(value):
    if isinstance(value, Decimal):
        return f"{_MARK}{value.normalize():f}"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data) -> str:
    return _PLACEHOLDER.sub(r"\1", json.dumps(data, default=_encode))


def loads(raw: bytes | str):
    """Numbers with a fraction come back as Decimal."""
    return json.loads(raw, parse_float=Decimal)
