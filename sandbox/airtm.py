"""Airtm Enterprise API v2 over HTTP (PROVIDERS.md), and the hosted checkout page a payer is sent to.

Basic auth with the configured key and secret, 10 requests a second per key, Airtm's error
shape `{"code", "message", "data"?}`, amounts as JSON numbers with at most 2 decimals, fault
injection like the other sandboxes. The state machine is in sandbox/airtm_engine.py.
"""

import base64
import binascii
import functools
import hmac
from urllib.parse import urlsplit

from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from offerhub import jsonnum
from offerhub.api.ratelimit import rate_limit_hit
from sandbox import airtm_engine as engine
from sandbox.airtm_engine import BAD_REQUEST, AirtmError, cents_from_amount
from sandbox.faults import with_faults
from sandbox.models import SandboxAirtmPayin, SandboxAirtmPayout, SandboxAirtmPayoutEvent

MAX_CODE = 200


def respond(data, status: int = 200) -> HttpResponse:
    return HttpResponse(jsonnum.dumps(data), status=status, content_type="application/json")


def _error(failure: AirtmError) -> HttpResponse:
    body = {"code": failure.code, "message": failure.message}
    if failure.data:
        body["data"] = failure.data
    return respond(body, failure.status)


def _credentials_ok(request) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    key_ok = hmac.compare_digest(key.encode(), settings.OFFERHUB_AIRTM_API_KEY.encode())
    secret_ok = hmac.compare_digest(secret.encode(), settings.OFFERHUB_AIRTM_API_SECRET.encode())
    return key_ok and secret_ok


def airtm_api(view):
    """Fault injection, Basic auth, the per-key rate limit, JSON bodies, Airtm's error shape."""

    @csrf_exempt
    @with_faults("airtm")
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not _credentials_ok(request):
            response = _error(AirtmError(401, engine.UNAUTHORIZED, "Unauthorized: invalid API key or secret"))
            response["WWW-Authenticate"] = 'Basic realm="Airtm"'
            return response
        limit = rate_limit_hit(
            bucket=f"sandbox-airtm:{settings.OFFERHUB_AIRTM_API_KEY}", limit=settings.SANDBOX_AIRTM_RATE_LIMIT, window=1
        )
        if limit.exceeded:
            response = respond(
                {"code": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded: 10 requests a second"}, 429
            )
            response["Retry-After"] = str(limit.retry_after)
            return response
        try:
            if request.method == "POST" and request.body:
                try:
                    request.json = jsonnum.loads(request.body)
                except ValueError:
                    raise AirtmError(400, BAD_REQUEST, "Malformed JSON body") from None
                if not isinstance(request.json, dict):
                    raise AirtmError(400, BAD_REQUEST, "The body must be a JSON object")
            else:
                request.json = {}
            return view(request, *args, **kwargs)
        except AirtmError as failure:
            return _error(failure)

    return wrapped


# --- input ------------------------------------------------------------------------------


def _text(body: dict, field: str, max_length: int, *, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or "\x00" in value:
        raise AirtmError(
            400, BAD_REQUEST, f"{field} must be a non-empty string of at most {max_length} characters", {"field": field}
        )
    return value


def _uri(body: dict, field: str) -> str:
    value = _text(body, field, 2000)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AirtmError(400, BAD_REQUEST, f"{field} must be an http(s) URL", {"field": field})
    return value


def _flag(body: dict, field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise AirtmError(400, BAD_REQUEST, f"{field} must be a boolean", {"field": field})
    return value


def _items(body: dict) -> list[dict]:
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= 100:
        raise AirtmError(400, BAD_REQUEST, "items must be a list of 1 to 100 items", {"field": "items"})
    parsed = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise AirtmError(400, BAD_REQUEST, "each item must be an object", {"field": f"items[{index}]"})
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 10_000:
            raise AirtmError(400, BAD_REQUEST, "quantity must be a whole number from 1", {"field": f"items[{index}]"})
        parsed.append(
            {
                "description": _text(item, "description", 250),
                "cents": cents_from_amount(item.get("amount"), f"items[{index}].amount"),
                "quantity": quantity,
            }
        )
    return parsed


PAYOUT_FIELDS = {
    "airtmUserEmail",
    "amount",
    "notes",
    "code",
    "commit",
    "enterpriseFee",
    "internalNote",
    "requireIdVerified",
}


# --- payins -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@airtm_api
def payins(request):
    if request.method == "GET":
        return respond(_page(request, SandboxAirtmPayin.objects.all(), engine.payin_json))
    body = request.json
    code = _text(body, "code", MAX_CODE)
    amount_cents = cents_from_amount(body.get("amount"), "amount")
    description = _text(body, "description", 250)
    items = _items(body)
    if sum(item["cents"] * item["quantity"] for item in items) != amount_cents:
        raise AirtmError(400, BAD_REQUEST, "amount must equal the sum of the items", {"field": "amount"})
    payin = engine.airtm_payin_create(
        code=code,
        amount_cents=amount_cents,
        description=description,
        items=items,
        confirmation_uri=_uri(body, "confirmationUri"),
        cancel_uri=_uri(body, "cancelUri"),
    )
    return respond(engine.payin_json(payin), 201)


@require_http_methods(["GET", "DELETE"])
@airtm_api
def payin_detail(request, payin_id):
    if request.method == "DELETE":
        return respond(engine.payin_json(engine.airtm_payin_settle(airtm_id=payin_id, outcome="cancel")))
    return respond(engine.payin_json(engine.airtm_payin_get(airtm_id=payin_id)))


@require_GET
@airtm_api
def payin_by_code(request, code):
    return respond(engine.payin_json(engine.airtm_payin_get(code=code)))


# --- payouts ----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@airtm_api
def payouts(request):
    if request.method == "GET":
        listed = SandboxAirtmPayout.objects.select_related("recipient")
        return respond(_page(request, listed, engine.payout_json))
    body = request.json
    unknown = sorted(set(body) - PAYOUT_FIELDS)
    if unknown:
        raise AirtmError(400, BAD_REQUEST, f"Unknown fields: {', '.join(unknown)}", {"fields": unknown})
    email = _text(body, "airtmUserEmail", 254)
    amount_cents = cents_from_amount(body.get("amount"), "amount")
    notes = _text(body, "notes", 255)
    code = _text(body, "code", MAX_CODE, required=False)
    fee = body.get("enterpriseFee")
    payout = engine.airtm_payout_create(
        email=email,
        amount_cents=amount_cents,
        notes=notes,
        code=code,
        commit=_flag(body, "commit"),
        enterprise_fee_cents=0 if fee is None else cents_from_amount(fee, "enterpriseFee", allow_zero=True),
        internal_note=_text(body, "internalNote", 255, required=False) or "",
        require_id_verified=_flag(body, "requireIdVerified"),
    )
    return respond(engine.payout_json(payout), 201)


@require_http_methods(["GET", "DELETE"])
@airtm_api
def payout_detail(request, payout_id):
    if request.method == "DELETE":
        return respond(engine.payout_json(engine.airtm_payout_cancel(airtm_id=payout_id)))
    return respond(engine.payout_json(engine.airtm_payout_get(airtm_id=payout_id)))


@require_POST
@airtm_api
def payout_commit(request, payout_id):
    return respond(engine.payout_json(engine.airtm_payout_commit(airtm_id=payout_id)))


@require_GET
@airtm_api
def payout_by_code(request, code):
    return respond(engine.payout_json(engine.airtm_payout_get(code=code)))


def _event_json(event: SandboxAirtmPayoutEvent) -> dict:
    return {
        "id": str(event.pk),
        "payoutId": event.payout.airtm_id,
        "status": event.status,
        "createdAt": engine._time(event.created_at),
    }


@require_GET
@airtm_api
def payout_events(request, payout_id):
    payout = engine.airtm_payout_get(airtm_id=payout_id)
    events = SandboxAirtmPayoutEvent.objects.filter(payout=payout).select_related("payout")
    return respond(_page(request, events, _event_json, cursor_field="pk", newest_first=False))


# --- users and the account ----------------------------------------------------------------


@require_GET
@airtm_api
def user_by_email(request, email):
    return respond(engine.user_json(engine.airtm_user_find(email)))


@require_GET
@airtm_api
def me(request):
    account = engine.airtm_account()
    return respond({"id": f"sandbox-enterprise-{account.pk}", "name": account.name, "currency": "USD"})


@require_GET
@airtm_api
def me_balance(request):
    available, pending = engine.airtm_balance_cents()
    return respond({"available": engine.amount_from_cents(available), "pending": engine.amount_from_cents(pending)})


# --- paging -----------------------------------------------------------------------------


def _page(request, queryset, shape, *, cursor_field: str = "airtm_id", newest_first: bool = True) -> dict:
    """Airtm's cursors: `after` the page that follows a cursor, `before` the one that precedes it;
    `perPage` 10 to 1000. Lists run newest first; a payout's events oldest first."""
    per_page = request.GET.get("perPage", "100")
    if not per_page.isdigit() or not 10 <= int(per_page) <= 1000:
        raise AirtmError(400, BAD_REQUEST, "perPage must be between 10 and 1000", {"field": "perPage"})
    per_page = int(per_page)
    after, before = request.GET.get("after"), request.GET.get("before")
    if after and before:
        raise AirtmError(400, BAD_REQUEST, "use before or after, not both")
    forward, backward = ("-pk", "pk") if newest_first else ("pk", "-pk")
    rows = queryset.order_by(forward)
    cursor = after or before
    if cursor:
        valid = not (cursor_field == "pk" and not cursor.isdigit())
        anchor = valid and queryset.model.objects.filter(**{cursor_field: cursor}).values_list("pk", flat=True).first()
        if not anchor:
            raise AirtmError(400, BAD_REQUEST, "unknown cursor", {"field": "after" if after else "before"})
        older, newer = {"pk__lt": anchor}, {"pk__gt": anchor}
        if after:
            rows = queryset.filter(**(older if newest_first else newer)).order_by(forward)
        else:
            rows = queryset.filter(**(newer if newest_first else older)).order_by(backward)
    found = list(rows[:per_page])
    if before:
        found.reverse()
    items = [shape(row) for row in found]
    cursor_of = (lambda row: str(row.pk)) if cursor_field == "pk" else (lambda row: getattr(row, cursor_field))
    return {
        "items": items,
        "startCursor": cursor_of(found[0]) if found else None,
        "endCursor": cursor_of(found[-1]) if found else None,
    }


# --- the hosted checkout ------------------------------------------------------------------


def _payin_or_404(payin_id: str) -> SandboxAirtmPayin:
    payin = SandboxAirtmPayin.objects.filter(airtm_id=payin_id).first()
    if payin is None:
        raise Http404("No such payin")
    return payin


@require_GET
def checkout(request, payin_id):
    return _checkout_page(request, _payin_or_404(payin_id))


def _checkout_page(request, payin: SandboxAirtmPayin, status: int = 200) -> HttpResponse:
    response = render(
        request,
        "sandbox/airtm/checkout.html",
        {"payin": payin, "amount": engine.amount_from_cents(payin.amount_cents), "items": _checkout_items(payin)},
        status=status,
    )
    # Airtm's real page is on its own origin and sends the payer back wherever the merchant
    # asked; our form-action 'self' would block that redirect when the merchant's URL is another
    # origin (SITE_URL as localhost while the page is read at 127.0.0.1, say).
    response._csp_update = {"form-action": sorted(_origins(payin.confirmation_uri, payin.cancel_uri))}
    return response


def _origins(*urls: str) -> set[str]:
    origins = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


def _checkout_items(payin: SandboxAirtmPayin) -> list[dict]:
    return [
        {
            "description": item["description"],
            "quantity": item["quantity"],
            "amount": engine.amount_from_cents(item["cents"]),
        }
        for item in payin.items
    ]


@require_POST
def checkout_action(request, payin_id, outcome):
    """Pay, Cancel, or (for trying the unhappy path) a declined payment; then back to the merchant."""
    payin = _payin_or_404(payin_id)
    try:
        payin = engine.airtm_payin_settle(airtm_id=payin.airtm_id, outcome=outcome)
    except AirtmError:
        return _checkout_page(request, _payin_or_404(payin_id), status=409)  # already settled: the page says how
    return HttpResponseRedirect(payin.confirmation_uri if outcome == "pay" else payin.cancel_uri)
