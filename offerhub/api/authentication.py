"""Bearer authentication with API keys, the master key and short-lived tokens (API.md §1.2)."""

import hmac
import time
from dataclasses import dataclass, field

import jwt
from django.conf import settings
from rest_framework.authentication import BaseAuthentication

from offerhub.errors import ServiceError
from offerhub.models import ApiKey
from offerhub.services import api_key_parse, api_key_secret_matches, api_key_touch

TOKEN_PREFIX = "ohk_tok_"  # noqa: S105  (a prefix, not a secret)
TOKEN_AUDIENCE = "offerhub-api"  # noqa: S105
MASTER_ID = "master"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, a token of one, or the master key."""

    key_id: str
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    marketplace_id: str = ""
    via_token: bool = False
    expires_at: int | None = None  # a token's expiry (Unix seconds)

    is_authenticated = True

    @property
    def is_master(self) -> bool:
        return self.key_id == MASTER_ID

    def has_scope(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes


def _invalid_key() -> ServiceError:
    return ServiceError("INVALID_API_KEY", "Invalid API key")


def scopes_intersect(first: frozenset[str], second: frozenset[str]) -> frozenset[str]:
    """Intersection where `*` stands for every scope."""
    if "*" in first:
        return second
    if "*" in second:
        return first
    return first & second


def token_signing_key() -> str:
    return f"offerhub-api-token:{settings.SECRET_KEY}"


def principal_from_token(token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            token_signing_key(),
            algorithms=["HS256"],
            audience=TOKEN_AUDIENCE,
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError:
        raise _invalid_key() from None
    api_key = ApiKey.objects.filter(pk=claims["sub"]).first()
    if api_key is None or not api_key.is_active:  # revoking the parent key kills its tokens
        raise _invalid_key()
    # The token's scopes were narrowed at minting; they can only shrink with the parent's.
    scopes = scopes_intersect(frozenset(claims.get("scopes", [])), frozenset(api_key.scopes))
    return Principal(
        api_key.id, api_key.name, scopes, api_key.marketplace_id, via_token=True, expires_at=int(claims["exp"])
    )


def principal_from_api_key(raw: str) -> Principal:
    parsed = api_key_parse(raw)
    if parsed is None:
        raise _invalid_key()
    key_id, secret = parsed
    api_key = ApiKey.objects.filter(pk=key_id).first()
    if api_key is None or not api_key_secret_matches(api_key=api_key, secret=secret) or not api_key.is_active:
        raise _invalid_key()
    api_key_touch(api_key=api_key)
    return Principal(api_key.id, api_key.name, frozenset(api_key.scopes), api_key.marketplace_id)


def principal_from_bearer(raw: str) -> Principal:
    master = settings.OFFERHUB_MASTER_KEY
    if master and hmac.compare_digest(raw.encode(), master.encode()):
        return Principal(MASTER_ID, "Master key", frozenset({"*"}))
    if raw.startswith(TOKEN_PREFIX):
        return principal_from_token(raw[len(TOKEN_PREFIX) :])
    return principal_from_api_key(raw)


def bearer_credential(header: str) -> str:
    """The credential of an `Authorization: Bearer …` header; anything else is a 401."""
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise ServiceError("UNAUTHORIZED", "Authorization header with a Bearer API key is required")
    return raw


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        principal = principal_from_bearer(bearer_credential(request.headers.get("Authorization", "")))
        return principal, principal

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def api_token_mint(*, api_key: ApiKey, scopes: frozenset[str], ttl_seconds: int) -> tuple[str, int]:
    """A short-lived bearer token for one key; returns the token and its expiry (Unix seconds)."""
    issued_at = int(time.time())
    expires_at = issued_at + ttl_seconds
    claims = {
        "sub": api_key.id,
        "scopes": sorted(scopes),
        "iat": issued_at,
        "exp": expires_at,
        "aud": TOKEN_AUDIENCE,
    }
    return TOKEN_PREFIX + jwt.encode(claims, token_signing_key(), algorithm="HS256"), expires_at
