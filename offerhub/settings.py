"""OfferHub settings: one module, driven entirely by environment variables.

Embedded mode (no variables set) runs everything in one process for `make run`:
SQLite under var/, Celery tasks executed in-process after commit, an in-memory
channel layer and the sandbox providers served by this same server.
Full mode is switched on piece by piece: DATABASE_URL (PostgreSQL), REDIS_URL
(Celery, channels-redis, cache, rate limits) and real provider URLs and keys.
Every variable is listed in .env.example and in the README.
"""

import warnings
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
_env_file = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    env.read_env(_env_file)

VERSION = "0.1.0"

DEBUG = env.bool("DEBUG", default=True)
PORT = env.int("PORT", default=8000)
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")


def _dev_secret_key() -> str:
    """A random per-checkout key for development, kept in var/ so sessions survive restarts."""
    from django.core.management.utils import get_random_secret_key

    VAR_DIR.mkdir(exist_ok=True)
    key_file = VAR_DIR / "dev-secret-key"
    if not key_file.exists():
        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off (production) OfferHub refuses to start "
            "without it: set SECRET_KEY to a long random value, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = _dev_secret_key()
# Django's own bar for a production key (`check --deploy`): signed sessions, password reset
# links and the like are only as strong as it.
if not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-")):
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for production (DEBUG off): use at least 50 random characters, "
        "e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )

# Loopback names are always allowed: the container health check and local tools use them.
ALLOWED_HOSTS = [*env.list("ALLOWED_HOSTS", default=[]), "127.0.0.1", "localhost", "[::1]"]
if DEBUG:
    ALLOWED_HOSTS += ["testserver"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Providers -------------------------------------------------------------------
# Unset provider URLs point at the sandbox served by this same server (sandbox/),
# which speaks the real HTTP APIs. Production refuses to start on the sandbox.
OFFERHUB_SANDBOX = env.bool("OFFERHUB_SANDBOX", default=DEBUG)
SANDBOX_BASE_URL = f"{SITE_URL}/sandbox"

TRUSTLESS_WORK_API_URL = env.str("TRUSTLESS_WORK_API_URL", default=f"{SANDBOX_BASE_URL}/trustless-work").rstrip("/")
TRUSTLESS_WORK_API_KEY = env.str("TRUSTLESS_WORK_API_KEY", default="sandbox-trustless-work-key")
# Airtm Enterprise API v2 (PROVIDERS.md). The older AIRTM_API_URL/KEY/SECRET variables are still
# read when the OFFERHUB_AIRTM_* ones are unset, and the old setting names remain aliases.
OFFERHUB_AIRTM_BASE_URL = env.str(
    "OFFERHUB_AIRTM_BASE_URL", default=env.str("AIRTM_API_URL", default=f"{SANDBOX_BASE_URL}/airtm/v2")
).rstrip("/")
OFFERHUB_AIRTM_API_KEY = env.str(
    "OFFERHUB_AIRTM_API_KEY", default=env.str("AIRTM_API_KEY", default="sandbox-airtm-key")
)
OFFERHUB_AIRTM_API_SECRET = env.str(
    "OFFERHUB_AIRTM_API_SECRET", default=env.str("AIRTM_API_SECRET", default="sandbox-airtm-secret")
)
# Where the user is sent to pay a payin: `<base>/<payin id>` (the sandbox's hosted checkout by default).
OFFERHUB_AIRTM_CHECKOUT_BASE_URL = env.str(
    "OFFERHUB_AIRTM_CHECKOUT_BASE_URL", default=f"{SANDBOX_BASE_URL}/airtm/checkout"
).rstrip("/")
# The Svix endpoint secret Airtm's webhooks are signed with. The sandbox signs with this same value;
# without a sandbox there is no default: unsigned-by-us webhooks are then never processed.
SANDBOX_AIRTM_DEFAULT_WEBHOOK_SECRET = "whsec_c2FuZGJveC1haXJ0bS13ZWJob29rLXNlY3JldC0zMg=="  # noqa: S105 (public)
OFFERHUB_AIRTM_WEBHOOK_SECRET = env.str(
    "OFFERHUB_AIRTM_WEBHOOK_SECRET", default=SANDBOX_AIRTM_DEFAULT_WEBHOOK_SECRET if OFFERHUB_SANDBOX else ""
)
STELLAR_HORIZON_URL = env.str("STELLAR_HORIZON_URL", default=f"{SANDBOX_BASE_URL}/horizon").rstrip("/")
STELLAR_NETWORK = env.str("STELLAR_NETWORK", default="testnet")
if STELLAR_NETWORK not in ("testnet", "mainnet"):
    raise ImproperlyConfigured(f"STELLAR_NETWORK must be 'testnet' or 'mainnet', not {STELLAR_NETWORK!r}.")
STELLAR_NETWORK_PASSPHRASE = {
    "testnet": "Test SDF Network ; September 2015",
    "mainnet": "Public Global Stellar Network ; September 2015",
}[STELLAR_NETWORK]
# Circle's USDC issuers; the sandbox plays the testnet one.
STELLAR_USDC_ISSUER = env.str(
    "STELLAR_USDC_ISSUER",
    default={
        "testnet": "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5",
        "mainnet": "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN",
    }[STELLAR_NETWORK],
)
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=2.0)

HORIZON_TIMEOUT_SECONDS = env.float("HORIZON_TIMEOUT_SECONDS", default=30.0)
TRUSTLESS_WORK_TIMEOUT_SECONDS = env.float("TRUSTLESS_WORK_TIMEOUT_SECONDS", default=30.0)
# Airtm (payments.airtm): connect and read timeouts per request, and the requests per second per
# API key the client allows itself across every process (Airtm answers 429 beyond 10).
OFFERHUB_AIRTM_CONNECT_TIMEOUT_SECONDS = env.float("OFFERHUB_AIRTM_CONNECT_TIMEOUT_SECONDS", default=5.0)
OFFERHUB_AIRTM_TIMEOUT_SECONDS = env.float("OFFERHUB_AIRTM_TIMEOUT_SECONDS", default=30.0)
OFFERHUB_AIRTM_RATE_LIMIT_PER_SECOND = env.int("OFFERHUB_AIRTM_RATE_LIMIT_PER_SECOND", default=10)
# Linking an Airtm account refuses one whose owner has not verified their identity at Airtm.
OFFERHUB_AIRTM_REQUIRE_VERIFIED = env.bool("OFFERHUB_AIRTM_REQUIRE_VERIFIED", default=True)
# Time bounds of the payments we sign: after this (by the network's clock) an unlanded
# envelope can never land, and only then is a replacement signed.
STELLAR_TX_LIFETIME_SECONDS = env.int("STELLAR_TX_LIFETIME_SECONDS", default=300)
STELLAR_TX_EXPIRY_MARGIN_SECONDS = 30
# Existing platform account to import on `platform_bootstrap` (mainnet); testnet and the
# sandbox generate one and fund it with friendbot.
OFFERHUB_PLATFORM_SECRET_KEY = env.str("OFFERHUB_PLATFORM_SECRET_KEY", default="")
# Accounts that deploy, release and resolve escrows for the platform (each escrow names one):
# a signer's transactions take turns, so one account would queue every order's. The platform
# account stays the treasury (fees, sponsoring). 0: the platform account signs, as before.
OFFERHUB_PLATFORM_SIGNERS = env.int("OFFERHUB_PLATFORM_SIGNERS", default=4)
if not 0 <= OFFERHUB_PLATFORM_SIGNERS <= 100:
    raise ImproperlyConfigured("OFFERHUB_PLATFORM_SIGNERS must be from 0 to 100")
# Escrow: the platform's cut of every release (a percent, 0-99, paid to the platform address
# by the contract), and how many contracts one sync request reads.
OFFERHUB_PLATFORM_FEE_PERCENT = Decimal(env.str("OFFERHUB_PLATFORM_FEE_PERCENT", default="2.0"))
# The most network fee (stroops, all included) a provider-built transaction may let the network
# charge before we sign it; 5 XLM is far above a contract call's usual cost (~0.01-0.5 XLM).
OFFERHUB_MAX_TRANSACTION_FEE = env.int("OFFERHUB_MAX_TRANSACTION_FEE", default=50_000_000)
if not Decimal(0) <= OFFERHUB_PLATFORM_FEE_PERCENT <= Decimal(99):
    raise ImproperlyConfigured("OFFERHUB_PLATFORM_FEE_PERCENT must be a percent from 0 to 99")
ESCROW_SYNC_BATCH_SIZE = 20
# A step whose run ends without an outcome (provider down, an unexpected error) waits before
# the resume sweeper tries it again: 20 s, doubling per failure, at most 15 min. After this
# many failures in a row it is listed in the backoffice as needing attention.
ESCROW_STEP_RETRY_BASE_SECONDS = 20
ESCROW_STEP_RETRY_MAX_SECONDS = 900
ESCROW_STEP_ATTENTION_AFTER = 5
# Orders: how long a buyer has to review a delivery before it is released automatically;
# how long an API call waits for a provider-backed step before answering 202.
OFFERHUB_INSPECTION_WINDOW_HOURS = env.int("OFFERHUB_INSPECTION_WINDOW_HOURS", default=72)
# How long the other party of a dispute has to answer (evidence or a message) before the case is overdue.
OFFERHUB_DISPUTE_RESPONSE_HOURS = env.int("OFFERHUB_DISPUTE_RESPONSE_HOURS", default=72)
OFFERHUB_SYNC_WAIT_SECONDS = env.float("OFFERHUB_SYNC_WAIT_SECONDS", default=55.0)
# Such a wait is woken by the order's change notification (offerhub.waits) and looks anyway this
# often (Redis down, a message lost); under ASGI its reads take one of these few shared threads.
OFFERHUB_SYNC_WAIT_RECHECK_SECONDS = env.float("OFFERHUB_SYNC_WAIT_RECHECK_SECONDS", default=3.0)
OFFERHUB_SYNC_WAIT_DB_THREADS = env.int("OFFERHUB_SYNC_WAIT_DB_THREADS", default=4)


def _dev_wallet_key() -> str:
    """A Fernet key for development, kept in var/ like the dev SECRET_KEY."""
    from cryptography.fernet import Fernet

    VAR_DIR.mkdir(exist_ok=True)
    key_file = VAR_DIR / "dev-wallet-key"
    if not key_file.exists():
        key_file.write_text(Fernet.generate_key().decode())
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# Fernet keys encrypting users' Stellar secrets at rest, newest first (rotation:
# prepend a new key, run `manage.py rotate_wallet_keys`, then drop the old one).
OFFERHUB_WALLET_KEYS = env.list("OFFERHUB_WALLET_KEYS", default=[])
if not OFFERHUB_WALLET_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "OFFERHUB_WALLET_KEYS is not set. With DEBUG off OfferHub refuses to start without the keys that "
            "encrypt wallet secrets: set it to one or more Fernet keys, newest first, e.g. the output of "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        )
    OFFERHUB_WALLET_KEYS = [_dev_wallet_key()]

PROVIDER_URLS = {
    "trustlessWork": TRUSTLESS_WORK_API_URL,
    "airtm": OFFERHUB_AIRTM_BASE_URL,
    "stellar": STELLAR_HORIZON_URL,
}


def _uses_sandbox(url: str) -> bool:
    return url.startswith(SANDBOX_BASE_URL) or "/sandbox/" in urlsplit(url).path + "/"


SANDBOX_PROVIDERS = sorted(name for name, url in PROVIDER_URLS.items() if _uses_sandbox(url))

if not DEBUG and (OFFERHUB_SANDBOX or SANDBOX_PROVIDERS):
    reasons = []
    if OFFERHUB_SANDBOX:
        reasons.append("OFFERHUB_SANDBOX is on")
    if SANDBOX_PROVIDERS:
        reasons.append("these providers point at the sandbox: " + ", ".join(SANDBOX_PROVIDERS))
    raise ImproperlyConfigured(
        "Refusing to start in production (DEBUG off) with sandbox providers: "
        + "; ".join(reasons)
        + ". Set TRUSTLESS_WORK_API_URL, OFFERHUB_AIRTM_BASE_URL and STELLAR_HORIZON_URL to the real "
        "services and OFFERHUB_SANDBOX=false, or set DEBUG=true for a development server."
    )

# Sandbox Trustless Work: requests per 60 s per API key, and whether the simulated indexer
# lags after a deploy (until /indexer/update-from-txHash), as the real one can.
SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 50
SANDBOX_TRUSTLESS_WORK_INDEXER_LAG = False
# Tests: Horizon has not ingested the latest ledgers, so a resubmitted transaction that already
# landed is refused by core (tx_bad_seq; a fee bump's as tx_fee_bump_inner_failed) instead of
# answered from history.
SANDBOX_HORIZON_INGEST_LAG = False
# Sandbox Airtm: requests per second per API key (Airtm's 10), the enterprise account's opening
# balance in dollars, where its webhooks go, how long each payout step takes, and a factor
# compressing Svix's retry schedule (tests set it small).
SANDBOX_AIRTM_RATE_LIMIT = 10
SANDBOX_AIRTM_OPENING_BALANCE = env.str("SANDBOX_AIRTM_OPENING_BALANCE", default="100000.00")
SANDBOX_AIRTM_WEBHOOK_URL = env.str("SANDBOX_AIRTM_WEBHOOK_URL", default=f"{SITE_URL}/api/v1/webhooks/airtm")
SANDBOX_AIRTM_PAYOUT_STEP_SECONDS = env.float("SANDBOX_AIRTM_PAYOUT_STEP_SECONDS", default=5.0)
SANDBOX_AIRTM_WEBHOOK_RETRY_FACTOR = env.float("SANDBOX_AIRTM_WEBHOOK_RETRY_FACTOR", default=1.0)

# --- Applications ----------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, served from our static files
    "django_htmx",
    "channels",
    "csp",
    "offerhub.apps.OfferHubConfig",
    "payments.apps.PaymentsConfig",
    "escrow.apps.EscrowConfig",
    "marketplace.apps.MarketplaceConfig",
    "disputes.apps.DisputesConfig",
    "backoffice.apps.BackofficeConfig",
    "hooks.apps.HooksConfig",
]
if OFFERHUB_SANDBOX:
    INSTALLED_APPS.append("sandbox.apps.SandboxConfig")

MIDDLEWARE = [
    "offerhub.correlation.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "offerhub.security.CSPMiddleware",
    "offerhub.security.PermissionsPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # /api/v1/ requests go from here straight to their view: what follows is for pages only.
    "offerhub.api.middleware.ApiPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "marketplace.sessions.MemberMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "offerhub.database.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "offerhub.urls"
WSGI_APPLICATION = "offerhub.wsgi.application"
ASGI_APPLICATION = "offerhub.asgi.application"
AUTH_USER_MODEL = "marketplace.User"
# Django's database sessions and ModelBackend, with the session, its member and the catalogue's
# version read by one statement prepared once per connection (marketplace/sessions.py,
# docs/deployment.md). ModelBackend stays listed for the sessions from before, which name it.
SESSION_ENGINE = "marketplace.sessions"
AUTHENTICATION_BACKENDS = [
    "marketplace.auth_backends.PreparedModelBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Messages live in the session (server side), never in a cookie: the admin shows a new
# API key's secret through one.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "offerhub.context_processors.site",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------
VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'offerhub.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and IMMEDIATE transactions let the web server and the beat process share the file.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    # Under ASGI every request runs on a thread of its own, so a connection kept per thread
    # (CONN_MAX_AGE) is never reused: bursts of requests left one idle connection each until
    # PostgreSQL refused clients. A pool per process reuses connections and bounds them: a
    # request beyond DATABASE_POOL_MAX_SIZE waits for a free one (DATABASE_POOL_TIMEOUT
    # seconds, then it answers 503 with Retry-After). 0 turns the pool off (e.g. behind
    # PgBouncer), then a connection lives DATABASE_CONN_MAX_AGE seconds.
    # With the sandbox served by this same process, a request calling a provider holds one
    # connection while the sandbox's request for it takes another, and the background worker
    # calls the sandbox here too: the default is then twice as large, plus room for the worker.
    DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=25 if OFFERHUB_SANDBOX else 10)
    DATABASE_POOL_TIMEOUT = env.float("DATABASE_POOL_TIMEOUT", default=10.0)
    DATABASE_CONN_MAX_AGE = env.int("DATABASE_CONN_MAX_AGE", default=0)
    DATABASE_POOL_CHECK_IDLE_SECONDS = env.float("DATABASE_POOL_CHECK_IDLE_SECONDS", default=1.0)
    if DATABASE_POOL_MAX_SIZE > 0:
        if DATABASE_CONN_MAX_AGE:
            raise ImproperlyConfigured(
                "DATABASE_CONN_MAX_AGE keeps connections per thread and cannot be combined with the "
                "connection pool: unset it, or set DATABASE_POOL_MAX_SIZE=0 to turn the pool off."
            )
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": DATABASE_POOL_MAX_SIZE,
            "timeout": DATABASE_POOL_TIMEOUT,
        }
        # A pooled connection idle DATABASE_POOL_CHECK_IDLE_SECONDS or longer is checked (a
        # round trip) before a request gets it; one returned more recently is not.
        DATABASES["default"]["ENGINE"] = "offerhub.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = DATABASE_CONN_MAX_AGE
    # With the pool, offerhub.postgresql checks its idle connections; without, Django a kept one.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = DATABASE_POOL_MAX_SIZE <= 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, rate limits, Celery, channels ---------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "offerhub",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "offerhub"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# In-process broker in embedded mode; named host, or kombu warns that it "reverts to localhost".
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://localhost/")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
# Without a broker, tasks run in-process; they are still dispatched after commit.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "idempotency-reap-expired": {
        "task": "offerhub.tasks.idempotency_reap_expired",
        "schedule": crontab(minute="*/15"),
    },
    "events-reap-expired": {
        "task": "offerhub.tasks.events_reap_expired",
        "schedule": crontab(minute=7, hour="*/6"),
    },
    "deposits-watch": {"task": "payments.tasks.deposits_watch", "schedule": 15.0},
    "withdrawals-resolve-pending": {"task": "payments.tasks.withdrawals_resolve_pending", "schedule": 30.0},
    "payouts-resolve-pending": {
        "task": "payments.tasks.airtm_withdrawals_resolve_pending",
        "schedule": 60.0,
    },
    "wallets-activate-pending": {"task": "payments.tasks.wallets_activate_pending", "schedule": 60.0},
    "wallets-reconcile": {"task": "payments.tasks.wallets_reconcile", "schedule": crontab(minute="*/30")},
    "airtm-reconcile": {"task": "payments.tasks.airtm_reconcile_task", "schedule": crontab(minute=41)},
    "escrow-steps-resume": {"task": "escrow.tasks.escrow_steps_resume", "schedule": 20.0},
    "orders-release-inspected": {"task": "marketplace.tasks.orders_release_inspected_task", "schedule": 300.0},
    "escrow-sync": {"task": "escrow.tasks.escrow_sync_task", "schedule": crontab(minute="*/5")},
    "webhook-deliveries-sweep": {"task": "offerhub.tasks.webhook_deliveries_sweep", "schedule": 60.0},
    "outgoing-webhooks-sweep": {"task": "hooks.tasks.outgoing_deliveries_sweep", "schedule": 15.0},
    "topups-resolve-pending": {"task": "payments.tasks.topups_resolve_pending", "schedule": 60.0},
    "events-dispatch-pending": {
        "task": "offerhub.tasks.events_dispatch_pending",
        "schedule": 60.0,
    },
    "email-notifications-sweep": {"task": "offerhub.tasks.email_notifications_sweep", "schedule": 60.0},
}
if OFFERHUB_SANDBOX:
    # The sandbox Airtm moves its payouts along and retries its webhooks as the real one would.
    CELERY_BEAT_SCHEDULE |= {
        "sandbox-airtm-payouts-advance": {"task": "sandbox.tasks.airtm_payouts_advance_task", "schedule": 5.0},
        "sandbox-airtm-webhooks-retry": {"task": "sandbox.tasks.airtm_webhooks_deliver_due_task", "schedule": 5.0},
    }

# --- Static and media ------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))
# Private uploads (delivery evidence): outside MEDIA_ROOT, never at a public URL; served only
# by views that check who asks (offerhub.files), by Django or by the web server in front.
PRIVATE_MEDIA_ROOT = env.str("PRIVATE_MEDIA_ROOT", default=str(VAR_DIR / "private"))
PRIVATE_MEDIA_SERVE = env.str("PRIVATE_MEDIA_SERVE", default="django")  # or x-accel-redirect, x-sendfile
PRIVATE_MEDIA_ACCEL_PREFIX = env.str("PRIVATE_MEDIA_ACCEL_PREFIX", default="/_private/")
# Largest listing image accepted (each upload is also decoded: JPEG, PNG or WebP only).
OFFERHUB_LISTING_IMAGE_MAX_BYTES = env.int("OFFERHUB_LISTING_IMAGE_MAX_MB", default=5) * 1024 * 1024
# The largest request body read into memory (an API JSON body, a form's fields): Django's 2.5 MB.
# An API evidence file travels base64 in the body: about 14 MB lets the full 10 MB through.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("OFFERHUB_MAX_REQUEST_BYTES", default=2_621_440)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "private": {"BACKEND": "offerhub.files.PrivateFileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG  # serve files as they change, without a collectstatic

# --- Internationalisation --------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Auth and e-mail -------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)  # EMAIL_BACKEND, EMAIL_HOST, ... as django-environ documents
# Seconds an SMTP connection may hang: notifications are sent while their rows are marked (locked).
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="OfferHub <no-reply@offerhub.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Security --------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Only this origin's own files: no inline scripts, handlers or style attributes (the
# templates keep theirs in static/), no eval. Bootstrap draws some icons as data: images;
# 'self' covers this origin's WebSockets (ws:/wss:) too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Browser features no page uses, refused to this origin and to anything embedded.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
)
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^api/v1/health"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600)

# --- REST API --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["offerhub.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["offerhub.api.permissions.HasRequiredScope"],
    "DEFAULT_RENDERER_CLASSES": ["offerhub.api.renderers.ApiJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "offerhub.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "offerhub.api.schema.OfferHubAutoSchema",
    "UNAUTHENTICATED_USER": None,
}

# GET /api/v1/openapi.json and the Swagger UI at /api/v1/docs/ (docs/api.md).
SPECTACULAR_SETTINGS = {
    "TITLE": "OfferHub API",
    "DESCRIPTION": "Payments orchestrator: users, balances, orders in Trustless Work escrow, withdrawals. "
    "Conventions (envelope, errors, idempotency, pagination): docs/api.md in the repository.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "PREPROCESSING_HOOKS": ["offerhub.api.schema.schema_paths_only_api"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets that share a field name (`type`, `status`) get a name of their own.
    "ENUM_NAME_OVERRIDES": {
        "HealthStatusEnum": ["healthy", "degraded", "unhealthy"],
        "AuditResultEnum": ["SUCCESS", "FAILURE", "DISCREPANCY_FOUND"],
        "UserTypeEnum": "marketplace.models.User.Type",
        "UserStatusEnum": "marketplace.models.User.Status",
        "WithdrawalStatusEnum": "payments.models.Withdrawal.Status",
        "WithdrawalDestinationTypeEnum": "payments.models.Withdrawal.DestinationType",
        "OrderStatusEnum": "marketplace.models.Order.Status",
        "MilestoneStatusEnum": "marketplace.models.OrderMilestone.Status",
        "EscrowStatusEnum": "escrow.models.Escrow.Status",
        "DisputeStatusEnum": "disputes.models.Dispute.Status",
        "DisputeDecisionEnum": "disputes.models.Dispute.Decision",
        "EscrowTypeEnum": "escrow.models.Escrow.Type",
        "OpenedByEnum": "disputes.models.Dispute.OpenedBy",  # also withdrawnBy
        "DisputePartyEnum": "disputes.models.Party",  # submittedBy, postedBy
    },
}

OFFERHUB_MASTER_KEY = env.str("OFFERHUB_MASTER_KEY", default="")
OFFERHUB_API_KEY_ENVIRONMENT = "live" if STELLAR_NETWORK == "mainnet" else "test"
OFFERHUB_TOKEN_DEFAULT_TTL_SECONDS = 3600
OFFERHUB_IDEMPOTENCY_REQUIRED = env.bool("OFFERHUB_IDEMPOTENCY_REQUIRED", default=True)
# A claimed Idempotency-Key whose request crashed before taking its row lock is
# free again after this (the crashed transaction rolled back, so nothing ran). A provider-backed
# call holds its claim while it waits for the step: the claim must outlast the wait, or a retry
# would take the key over and run the action again while the first call still waits.
OFFERHUB_IDEMPOTENCY_LOCK_SECONDS = env.int(
    "OFFERHUB_IDEMPOTENCY_LOCK_SECONDS", default=max(90, int(OFFERHUB_SYNC_WAIT_SECONDS) + 35)
)
if OFFERHUB_IDEMPOTENCY_LOCK_SECONDS < OFFERHUB_SYNC_WAIT_SECONDS + 15:
    raise ImproperlyConfigured(
        f"OFFERHUB_IDEMPOTENCY_LOCK_SECONDS ({OFFERHUB_IDEMPOTENCY_LOCK_SECONDS}) must exceed "
        f"OFFERHUB_SYNC_WAIT_SECONDS ({OFFERHUB_SYNC_WAIT_SECONDS:g}) by at least 15 s: a call waiting for its "
        "provider step keeps its Idempotency-Key claimed."
    )
# How long a process trusts its copy of an API key's row (offerhub/api/authentication.py);
# revocations reach every process at once through Redis, this bounds a lost notification. 0: off.
OFFERHUB_API_KEY_CACHE_SECONDS = env.int("OFFERHUB_API_KEY_CACHE_SECONDS", default=10)
OFFERHUB_RATE_LIMIT_PER_MINUTE = env.int("OFFERHUB_RATE_LIMIT_PER_MINUTE", default=100)
OFFERHUB_RATE_LIMIT_WINDOW_SECONDS = env.int("OFFERHUB_RATE_LIMIT_WINDOW_SECONDS", default=60)
OFFERHUB_TRUSTED_PROXY_COUNT = env.int("OFFERHUB_TRUSTED_PROXY_COUNT", default=0)
OFFERHUB_EVENT_RETENTION_DAYS = env.int("OFFERHUB_EVENT_RETENTION_DAYS", default=30)
# A subscriber failing on an event retries it after 30 s, 60 s, … (at most an hour apart); after
# this many failures the event is parked for it (admin: Event dead letters) and it goes on.
OFFERHUB_EVENT_SUBSCRIBER_MAX_FAILURES = env.int("OFFERHUB_EVENT_SUBSCRIBER_MAX_FAILURES", default=8)
OFFERHUB_EVENT_RETRY_BASE_SECONDS = env.int("OFFERHUB_EVENT_RETRY_BASE_SECONDS", default=30)
# The event stream (GET /api/v1/events, API.md §12): a ping every HEARTBEAT seconds, at most
# MAX_STREAMS_PER_KEY open streams per API key (across web nodes when Redis is set), the
# credential checked again every REAUTH seconds (a revoked key's streams end), newly positioned
# events looked for every POLL seconds even when no Redis notification came, and the streams of
# one server process reading the database through DB_THREADS threads (so as many connections).
OFFERHUB_SSE_HEARTBEAT_SECONDS = env.float("OFFERHUB_SSE_HEARTBEAT_SECONDS", default=30.0)
OFFERHUB_SSE_MAX_STREAMS_PER_KEY = env.int("OFFERHUB_SSE_MAX_STREAMS_PER_KEY", default=10)
OFFERHUB_SSE_REAUTH_SECONDS = env.float("OFFERHUB_SSE_REAUTH_SECONDS", default=300.0)
OFFERHUB_SSE_POLL_SECONDS = env.float("OFFERHUB_SSE_POLL_SECONDS", default=2.0)
OFFERHUB_SSE_DB_THREADS = env.int("OFFERHUB_SSE_DB_THREADS", default=4)
OFFERHUB_SSE_RETRY_MILLISECONDS = env.int("OFFERHUB_SSE_RETRY_MILLISECONDS", default=3000)
OFFERHUB_SSE_WRITE_TIMEOUT_SECONDS = env.float("OFFERHUB_SSE_WRITE_TIMEOUT_SECONDS", default=60.0)
# Web origins whose pages may open the stream with EventSource and ?token= (CORS), e.g.
# https://shop.example.com; none by default (servers need no CORS).
OFFERHUB_SSE_ALLOWED_ORIGINS = env.list("OFFERHUB_SSE_ALLOWED_ORIGINS", default=[])
# Provider webhooks (API.md §13): the Trustless Work relay's HMAC key (x-tw-signature). Airtm's
# Svix secret is OFFERHUB_AIRTM_WEBHOOK_SECRET. Without a secret, deliveries are stored and not
# processed, unless OFFERHUB_WEBHOOKS_INSECURE (development only: anyone could post events).
TRUSTLESS_WEBHOOK_SECRET = env.str("TRUSTLESS_WEBHOOK_SECRET", default="")
OFFERHUB_WEBHOOKS_INSECURE = env.bool("OFFERHUB_WEBHOOKS_INSECURE", default=False)
# Outgoing webhooks (API.md §14): an endpoint with no successful delivery for this many days
# is disabled and support is e-mailed.
OFFERHUB_WEBHOOKS_DISABLE_AFTER_DAYS = env.int("OFFERHUB_WEBHOOKS_DISABLE_AFTER_DAYS", default=3)
if OFFERHUB_WEBHOOKS_INSECURE and not DEBUG:
    raise ImproperlyConfigured("OFFERHUB_WEBHOOKS_INSECURE accepts unsigned provider webhooks: never with DEBUG off.")
# Which payment rails are offered (payments.providers, docs/payments.md "Payment rails"): `crypto`
# (USDC on Stellar: deposit address, crypto withdrawals), `airtm` (Airtm top-ups and withdrawals,
# linking an Airtm account) or `hybrid` (both). It changes what the wallet page and the API offer,
# never how money already moving is settled.
_payments_provider = env.str("OFFERHUB_PAYMENTS_PROVIDER", default="hybrid")
OFFERHUB_PAYMENTS_PROVIDER = _payments_provider.strip().lower()
if OFFERHUB_PAYMENTS_PROVIDER not in ("crypto", "airtm", "hybrid"):
    raise ImproperlyConfigured(
        f"OFFERHUB_PAYMENTS_PROVIDER must be crypto, airtm or hybrid, not {_payments_provider!r}."
    )
# The Airtm reconciler (payments.airtm_reconciliation) re-reads, besides every top-up and Airtm
# withdrawal still in flight, those that changed in the last this many days.
OFFERHUB_AIRTM_RECONCILE_DAYS = env.int("OFFERHUB_AIRTM_RECONCILE_DAYS", default=7)
if OFFERHUB_AIRTM_RECONCILE_DAYS < 1:
    raise ImproperlyConfigured("OFFERHUB_AIRTM_RECONCILE_DAYS must be at least 1 (days).")
# Airtm done, the USDC on its way (a top-up's bridge to the member's wallet, a withdrawal's sweep to
# the treasury): the reconciler names it a discrepancy once it has waited longer than this.
OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES = env.int("OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES", default=60)
if OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES < 1:
    raise ImproperlyConfigured("OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES must be at least 1 (minutes).")
# Turned on as each part lands (orders and milestones, disputes, SSE, escrow). `airtm` (and the
# crypto flags) in GET /config follow OFFERHUB_PAYMENTS_PROVIDER (offerhub.api.views.ConfigView).
OFFERHUB_FEATURES = {"milestones": True, "disputes": True, "sse": False, "trustlessWork": True}
# An Airtm top-up left unpaid this long is canceled at Airtm (payments.topups, the periodic job).
OFFERHUB_TOPUP_EXPIRY_MINUTES = env.int("OFFERHUB_TOPUP_EXPIRY_MINUTES", default=60)
OFFERHUB_LIMITS = {
    "topup": {
        "min": env.str("OFFERHUB_TOPUP_MIN", default="1.00"),
        "max": env.str("OFFERHUB_TOPUP_MAX", default="10000.00"),
    },
    "withdrawal": {
        "min": env.str("OFFERHUB_WITHDRAWAL_MIN", default="10.00"),
        "max": env.str("OFFERHUB_WITHDRAWAL_MAX", default="5000.00"),
    },
    "order": {
        "min": env.str("OFFERHUB_ORDER_MIN", default="1.00"),
        "max": env.str("OFFERHUB_ORDER_MAX", default="50000.00"),
    },
}

# --- Logging: every line carries the correlation id ------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "correlation": {"()": "offerhub.correlation.CorrelationIdLogFilter"},
        "sandbox_not_found": {"()": "offerhub.correlation.SandboxNotFoundFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["correlation", "sandbox_not_found"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
    },
}

# WhiteNoise serves static files with a synchronous iterator; under ASGI Django warns on
# every file. Harmless (files are small and cached by browsers), so keep the log readable.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
