"""API requests skip the page-only middleware (offerhub.api.middleware.ApiPathMiddleware) and
keep every security header; pages keep theirs, CSRF included. Rate limits claim a bucket's
requests from Redis a few at a time (offerhub.api.ratelimit) and never admit more than the limit."""

import secrets
import time

import pytest
from django.conf import settings
from django.test import Client

from offerhub.api import ratelimit
from offerhub.api.ratelimit import lease_size, rate_limit_hit
from offerhub.redis_clients import redis_client

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = (
    "Content-Security-Policy",
    "Permissions-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Cross-Origin-Opener-Policy",
    "X-Request-ID",
)


@pytest.mark.parametrize(
    ("path", "status", "authorized"),
    [
        ("/api/v1/health", 200, False),
        ("/api/v1/auth/me", 200, True),
        ("/api/v1/auth/me", 401, False),
        ("/api/v1/no-such-endpoint", 404, False),
    ],
)
def test_api_answers_keep_every_security_header_and_set_no_cookie(auth_client, api_client, path, status, authorized):
    client = auth_client(scopes=["read"]) if authorized else api_client
    response = client.get(path, HTTP_X_REQUEST_ID="req-123")
    assert response.status_code == status
    for header in SECURITY_HEADERS:
        assert response.has_header(header), header
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Request-ID"] == "req-123"
    assert "X-RateLimit-Limit" in response
    assert int(response["Content-Length"]) == len(response.content)
    assert response["Content-Type"].startswith("application/json")
    assert not response.cookies  # no session, no CSRF cookie
    assert "Cookie" not in response.get("Vary", "")


def test_an_api_request_is_served_without_the_page_middleware(auth_client):
    api = auth_client(scopes=["read"]).get("/api/v1/auth/me").wsgi_request
    page = Client().get("/accounts/login/").wsgi_request
    assert hasattr(page, "session") and hasattr(page, "htmx") and hasattr(page, "_messages")
    assert not hasattr(api, "session") and not hasattr(api, "htmx") and not hasattr(api, "_messages")


def test_a_session_never_authenticates_the_api(client, user):
    client.force_login(user)
    response = client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_pages_keep_csrf_and_their_headers():
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/accounts/login/")
    assert page.status_code == 200 and settings.CSRF_COOKIE_NAME in page.cookies
    for header in SECURITY_HEADERS:
        assert page.has_header(header), header
    refused = browser.post("/accounts/login/", {"username": "a@example.test", "password": "x"})
    assert refused.status_code == 403  # no CSRF token


def test_api_requests_are_still_redirected_to_https(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = []
    response = Client().get("/api/v1/auth/me")
    assert response.status_code == 301 and response["Location"].startswith("https://")


# --- Rate limit leases ------------------------------------------------------------------------


def counter_key(bucket: str, window: int) -> str:
    return f"offerhub:ratelimit:{bucket}:{int(time.time() // window) * window}"


def redis_count(bucket: str, window: int) -> int:
    return int(redis_client().get(counter_key(bucket, window)) or 0)


@pytest.fixture
def bucket():
    ratelimit._leases.clear()
    return f"test:{secrets.token_hex(6)}"


def test_lease_sizes():
    assert lease_size(100) == 1  # the default limit: every request counted in Redis at once
    assert lease_size(3) == 1
    assert lease_size(1_000) == 5
    assert lease_size(100_000_000) == 64


def test_a_lease_admits_its_requests_with_exact_remaining(bucket):
    states = [rate_limit_hit(bucket=bucket, limit=1_000, window=3600) for _ in range(12)]
    assert [s.remaining for s in states] == list(range(999, 987, -1))
    assert not any(s.exceeded for s in states)
    assert redis_count(bucket, 3600) == 15  # three claims of five: one round trip per five requests


def test_never_more_than_the_limit_when_another_process_claimed_most(bucket):
    # Another process took 997 of 1,000: this one's claim of 5 straddles the limit and gets 3.
    redis_client().set(counter_key(bucket, 3600), 997, ex=60)
    states = [rate_limit_hit(bucket=bucket, limit=1_000, window=3600) for _ in range(5)]
    assert [s.exceeded for s in states] == [False, False, False, True, True]
    assert [s.remaining for s in states] == [2, 1, 0, 0, 0]


def test_a_bucket_past_its_limit_is_refused_without_asking_redis(bucket):
    for _ in range(3):
        rate_limit_hit(bucket=bucket, limit=3, window=3600)
    assert rate_limit_hit(bucket=bucket, limit=3, window=3600).exceeded
    counted = redis_count(bucket, 3600)
    for _ in range(20):
        state = rate_limit_hit(bucket=bucket, limit=3, window=3600)
        assert state.exceeded and state.remaining == 0 and state.retry_after >= 1
    assert redis_count(bucket, 3600) == counted  # the refusals cost Redis nothing


def test_the_api_refuses_past_a_leased_limit_with_the_envelope(auth_client, settings):
    ratelimit._leases.clear()
    settings.OFFERHUB_RATE_LIMIT_PER_MINUTE = 400  # leases of two
    settings.OFFERHUB_RATE_LIMIT_WINDOW_SECONDS = 3600
    client = auth_client(scopes=["read"])
    remaining = [int(client.get("/api/v1/auth/me")["X-RateLimit-Remaining"]) for _ in range(400)]
    assert remaining == list(range(399, -1, -1))
    limited = client.get("/api/v1/auth/me")
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert error["code"] == "RATE_LIMITED" and error["details"]["limit"] == 400
    assert limited["X-RateLimit-Remaining"] == "0" and int(limited["Retry-After"]) >= 1


# --- The Content-Security-Policy built once -----------------------------------------------------


def test_the_policy_built_once_is_django_csps(api_client):
    from csp.utils import build_policy

    for response in (api_client.get("/api/v1/health"), Client().get("/accounts/login/"), Client().get("/")):
        assert response["Content-Security-Policy"] == build_policy()
        assert "Content-Security-Policy-Report-Only" not in response


def test_a_changed_policy_setting_is_sent_at_once(api_client, settings):
    assert "'none'" in api_client.get("/api/v1/health")["Content-Security-Policy"]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'self'"], "img-src": ["'self'", "data:"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"script-src": ["'self'"]}}
    response = api_client.get("/api/v1/health")
    directives = sorted(part.strip() for part in response["Content-Security-Policy"].split(";"))
    assert directives == ["default-src 'self'", "img-src 'self' data:"]  # in no set order (django-csp)
    assert "script-src 'self'" in response["Content-Security-Policy-Report-Only"]


def test_a_views_own_policy_change_is_kept():
    """The sandbox's Airtm confirmation page widens form-action for its own response (django-csp's path)."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    from offerhub.security import CSPMiddleware

    def view(request):
        response = HttpResponse("ok")
        response._csp_update = {"form-action": ["https://pay.example"]}
        return response

    middleware = CSPMiddleware(view)
    request = RequestFactory().get("/anything")
    middleware.process_request(request)
    changed = middleware.process_response(request, view(request))["Content-Security-Policy"]
    assert "form-action 'self' https://pay.example" in changed
    plain_request = RequestFactory().get("/anything")
    middleware.process_request(plain_request)
    plain = middleware.process_response(plain_request, HttpResponse("ok"))["Content-Security-Policy"]
    assert "https://pay.example" not in plain and "form-action 'self'" in plain
