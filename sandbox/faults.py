"""Fault injection for the sandbox providers: latency, error statuses, timeouts.

Set per test (create a SandboxFault row) or from the admin. A fault with
`after_processing` lets the request take effect and then answers an error, which is
how a client meets the worst case: it cannot tell whether its call worked.
"""

import functools
import time

from django.db.models import F, Q
from django.http import JsonResponse

from sandbox.models import SandboxFault


def _matching_fault(service: str, request) -> SandboxFault | None:
    faults = SandboxFault.objects.filter(service=service, enabled=True).filter(
        Q(remaining__isnull=True) | Q(remaining__gt=0)
    )
    for fault in faults.order_by("id"):
        if fault.method and fault.method.upper() != request.method:
            continue
        if fault.path_contains and fault.path_contains not in request.path:
            continue
        if fault.remaining is not None:
            claimed = SandboxFault.objects.filter(pk=fault.pk, remaining__gt=0).update(remaining=F("remaining") - 1)
            if not claimed:
                continue
        return fault
    return None


def fault_response(status: int) -> JsonResponse:
    titles = {429: "Rate Limit Exceeded", 500: "Internal Server Error", 503: "Service Unavailable", 504: "Timeout"}
    body = {
        "type": "sandbox_fault",
        "title": titles.get(status, "Injected fault"),
        "status": status,
        "message": "fault injected by the OfferHub sandbox",
    }
    response = JsonResponse(body, status=status)
    if status == 429:
        response["Retry-After"] = "1"
    return response


def with_faults(service: str):
    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            fault = _matching_fault(service, request)
            if fault is None:
                return view(request, *args, **kwargs)
            response = view(request, *args, **kwargs) if fault.after_processing else None
            if fault.latency_ms:
                time.sleep(fault.latency_ms / 1000)
            if fault.timeout:
                time.sleep(fault.timeout_seconds)
                return fault_response(504)
            if fault.status_code:
                return fault_response(fault.status_code)
            return response if response is not None else view(request, *args, **kwargs)

        return wrapped

    return decorate
