"""Short order references for people (`#A7K2-93`), derived from the order's primary key.

Full public ids (`ord_…`) stay in the API, the webhooks and the backoffice; pages and e-mails
show the short reference, which people can read out to support or type into the backoffice's
search (and into /orders/<reference>/), and which resolves back to the order.

The scheme (docs/marketplace.md, "Order references"): the primary key goes through a fixed
permutation of the numbers below 2**bits (multiply by an odd constant, add an offset, modulo
2**bits: a bijection, so two orders never share a reference, and consecutive orders do not
look consecutive), is written in Crockford's base 32 (no I, L, O, U: nothing to confuse), and
ends with a check character (a sum of the digits with odd weights, modulo 32) that catches any
one mistyped character and most swaps of two neighbours. 25 bits (five characters) cover the
first 33 million orders; beyond that the body grows by a character, and its length says which
width to decode with.
"""

import re

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MULTIPLIER = 0x1C6F_9A5  # odd: invertible modulo every power of two
OFFSET = 0x0B3_D1E7
FIRST_DIGITS = 5
# What people might type for a digit: Crockford's decoding (lower case, O for 0, I and L for 1).
TYPED = str.maketrans({"O": "0", "I": "1", "L": "1"})
PATTERN = re.compile(r"^#?\s*([0-9A-Za-z]{4})[-\s]?([0-9A-Za-z]{2,})$")


def _check(digits: str) -> str:
    # Odd weights are invertible modulo 32: any one mistyped character changes the sum; distinct
    # ones make most swaps of two neighbours change it too.
    total = sum((2 * position + 1) * ALPHABET.index(digit) for position, digit in enumerate(digits))
    return ALPHABET[total % 32]


def _encode(value: int, length: int) -> str:
    digits = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def order_reference(pk: int) -> str:
    """The reference of the order with primary key `pk`, as people see it: `#A7K2-93`."""
    if pk is None or pk < 0:
        raise ValueError("an order reference needs a saved order's primary key")
    length = FIRST_DIGITS
    while pk >= 32**length:
        length += 1
    modulus = 32**length
    body = _encode((pk * MULTIPLIER + OFFSET) % modulus, length)
    code = body + _check(body)
    return f"#{code[:4]}-{code[4:]}"


def order_pk_from_reference(text: str) -> int | None:
    """The primary key a reference stands for (as typed: with or without `#` and the dash, any
    case), or None when it is not a well-formed reference or its check character is wrong."""
    match = PATTERN.match((text or "").strip().upper())
    if match is None:
        return None
    code = (match.group(1) + match.group(2)).translate(TYPED)
    if any(digit not in ALPHABET for digit in code):
        return None
    body, check = code[:-1], code[-1]
    if len(body) < FIRST_DIGITS or _check(body) != check:
        return None
    value = 0
    for digit in body:
        value = value * 32 + ALPHABET.index(digit)
    modulus = 32 ** len(body)
    pk = ((value - OFFSET) * pow(MULTIPLIER, -1, modulus)) % modulus
    # The shortest body is the only one: a longer one standing for a small key is not a reference.
    if len(body) > FIRST_DIGITS and pk < 32 ** (len(body) - 1):
        return None
    return pk
