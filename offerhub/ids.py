"""Public identifiers: `{prefix}{32 chars of [0-9A-Za-z]}`, as the API contract names them."""

import secrets
import string

_ALPHABET = string.digits + string.ascii_letters
PUBLIC_ID_LENGTH = 32


def random_alnum(length: int = PUBLIC_ID_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def public_id(prefix: str) -> str:
    return f"{prefix}{random_alnum()}"


def new_audit_id() -> str:
    return public_id("aud_")


def new_event_id() -> str:
    return public_id("evt_")


def new_api_key_id() -> str:
    return public_id("key_")


def new_user_id() -> str:
    return public_id("usr_")


def new_wallet_id() -> str:
    return public_id("wal_")


def new_withdrawal_id() -> str:
    return public_id("wd_")


def new_escrow_id() -> str:
    return public_id("esc_")


def new_dispute_id() -> str:
    return public_id("dsp_")


def new_dispute_evidence_id() -> str:
    return public_id("evd_")


def new_dispute_message_id() -> str:
    return public_id("msg_")


def new_topup_id() -> str:
    return public_id("topup_")
