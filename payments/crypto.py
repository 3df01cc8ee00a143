"""Encryption at rest of Stellar secret keys (MultiFernet over OFFERHUB_WALLET_KEYS).

The newest key encrypts; every listed key decrypts, so keys rotate without downtime.
Each ciphertext is stored with the version (a short fingerprint) of the key that made
it, so `rotate_wallet_keys` knows what is left to re-encrypt.
"""

import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def key_version(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "OFFERHUB_WALLET_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from None


def _current() -> MultiFernet:
    return _multifernet(tuple(settings.OFFERHUB_WALLET_KEYS))


def current_key_version() -> str:
    return key_version(settings.OFFERHUB_WALLET_KEYS[0])


def secret_encrypt(secret: str) -> tuple[str, str]:
    """Returns (ciphertext, key version)."""
    return _current().encrypt(secret.encode()).decode(), current_key_version()


def secret_decrypt(ciphertext: str) -> str:
    try:
        return _current().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A wallet secret cannot be decrypted with any key of OFFERHUB_WALLET_KEYS: a key still in use was removed."
        ) from None


def secret_rotate(ciphertext: str) -> tuple[str, str]:
    """Re-encrypt under the newest key."""
    return _current().rotate(ciphertext.encode()).decode(), current_key_version()
