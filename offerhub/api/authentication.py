"""Bearer authentication with API keys, the master key and short-lived tokens (API.md §1.2)."""

import hmac
import logging
import os
import threading
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

logger = logging.getLogger(__name__)


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


# --- The process's cache of API key rows ----------------------------------------------------
#
# Every authenticated API request used to read its key's row. Rows change only when a key is
# revoked (name, scopes and secret are fixed at creation), so a process keeps the rows it read for
# OFFERHUB_API_KEY_CACHE_SECONDS, and forgets one at once when it is revoked: in this process
# synchronously (api_key_revoke calls api_key_cache_forget), on every other web node through
# the Redis channel the event stream already listens to (offerhub:api-keys:revoked), which a
# thread of this process subscribes to. With REDIS_URL set, rows are kept only while that
# subscription is live (a lost connection empties the cache); a publish that fails is bounded by
# the TTL. The secret is still checked on every request, against the row's salted hash, in
# constant time (api_key_secret_matches): a cached row is never a cached "yes".


class _ApiKeyCache:
    def __init__(self):
        self.lock = threading.Lock()
        self.rows: dict[str, tuple[float, ApiKey]] = {}
        # Bumped by every forget: a row read from the database before a revocation was heard
        # is not stored after it.
        self.generation = 0
        self.subscribed = False
        self.listener_pid: int | None = None

    def usable(self) -> bool:
        if settings.OFFERHUB_API_KEY_CACHE_SECONDS <= 0:
            return False
        if not settings.REDIS_URL:
            return True  # embedded mode: one process serves the API (the TTL bounds any other)
        self._listener_ensure()
        return self.subscribed

    def get(self, key_id: str) -> ApiKey | None:
        entry = self.rows.get(key_id)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, key_id: str, api_key: ApiKey, generation: int) -> None:
        with self.lock:
            if generation != self.generation or not api_key.is_active:
                return
            if len(self.rows) >= 10_000:  # bounded: keys are few; a flood of ids is not kept
                self.rows.clear()
            self.rows[key_id] = (time.monotonic() + settings.OFFERHUB_API_KEY_CACHE_SECONDS, api_key)

    def forget(self, key_id: str | None) -> None:
        """One key, or every key (None)."""
        with self.lock:
            self.generation += 1
            if key_id is None:
                self.rows.clear()
            else:
                self.rows.pop(key_id, None)

    def _listener_ensure(self) -> None:
        pid = os.getpid()  # a forked worker starts its own listener
        if self.listener_pid == pid:
            return
        with self.lock:
            if self.listener_pid == pid:
                return
            self.listener_pid = pid
            self.subscribed = False
            self.rows.clear()
            threading.Thread(target=self._listen, name="api-key-revocations", daemon=True).start()

    def _listen(self) -> None:
        import redis

        from offerhub.event_stream import REVOKED_CHANNEL

        while True:
            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=10)
                with client.pubsub() as pubsub:
                    pubsub.subscribe(REVOKED_CHANNEL)
                    last_ping = time.monotonic()
                    while True:
                        message = pubsub.get_message(timeout=1.0)
                        if message is not None and message["type"] == "subscribe":
                            self.forget(None)  # whatever was revoked while not listening
                            self.subscribed = True
                        elif message is not None and message["type"] == "message":
                            self.forget(message["data"].decode())
                        if time.monotonic() - last_ping > 5:  # a dead connection raises here
                            pubsub.ping()
                            last_ping = time.monotonic()
            except Exception:
                logger.warning("API key cache: revocation channel lost; reading keys from the database", exc_info=True)
            finally:
                self.subscribed = False
                self.forget(None)
            time.sleep(1)


_api_key_cache = _ApiKeyCache()


def api_key_cache_forget(key_id: str) -> None:
    """This process stops trusting its copy of the key's row (called when it is revoked)."""
    _api_key_cache.forget(key_id)


def api_key_cache_usable() -> bool:
    """Whether this process keeps key rows now (with Redis: once it hears revocations)."""
    return _api_key_cache.usable()


def api_key_row(key_id: str) -> ApiKey | None:
    """The key's row: this process's recent copy of an active key, else the database's."""
    cache = _api_key_cache
    if not cache.usable():
        return ApiKey.objects.filter(pk=key_id).first()
    api_key = cache.get(key_id)
    if api_key is not None:
        return api_key
    generation = cache.generation
    api_key = ApiKey.objects.filter(pk=key_id).first()
    if api_key is not None:
        cache.put(key_id, api_key, generation)
    return api_key


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
    api_key = api_key_row(claims["sub"])
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
    api_key = api_key_row(key_id)
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
