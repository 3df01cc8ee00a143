"""The whole API fuzzed from its own OpenAPI schema (schemathesis) against the live test server.

Every operation gets generated requests, valid and invalid, with a key holding every scope;
path ids are drawn from real resources as often as from generated junk, so handlers run, not
just 404s. Every check must pass: no 5xx, statuses, content types, headers and bodies as the
schema says, invalid input refused, no answer without the key. (Not "every schema-valid request
succeeds": business rules, such as a buyer paying themselves or an amount over the limits, refuse
well-formed requests with 400/422 on purpose.) A bounded, derandomized run
(FUZZ_EXAMPLES examples an operation, `OFFERHUB_FUZZ_EXAMPLES` to raise it locally).
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from offerhub.models import AuditLog
from offerhub.services import api_key_create
from tests.escrow.conftest import trustless_work  # noqa: F401  (shared fixtures)
from tests.factories import UserFactory
from tests.payments.conftest import chain, funded_user  # noqa: F401  (shared fixtures)

FUZZ_EXAMPLES = int(os.environ.get("OFFERHUB_FUZZ_EXAMPLES", "25"))
# Ids of real resources, filled by the fixture for the path-parameter hook below.
REAL_IDS: dict[str, list[str]] = {}


@pytest.fixture
def api_schema(live_server, chain, funded_user, trustless_work, auth_client, settings):  # noqa: F811
    from marketplace.orders import SYSTEM, order_create
    from payments.models import Withdrawal
    from tests.marketplace.test_dispute_case_api import disputed, post
    from tests.marketplace.test_dispute_case_file_api import a_file

    settings.OFFERHUB_RATE_LIMIT_PER_MINUTE = 1_000_000
    settings.OFFERHUB_AIRTM_BASE_URL = live_server.url + "/sandbox/airtm/v2"  # Airtm is the sandbox's too
    # A dispute on an order in escrow, so the dispute handlers are reached, not only their 404;
    # with a file in its evidence, so its download is reached too.
    party = auth_client(scopes=["read", "write"])
    dispute = disputed(party, funded_user("50.00"), funded_user("0"))
    evidence = post(party, f"/disputes/{dispute['id']}/evidence", {"submittedBy": "BUYER", "file": a_file()})
    buyer = funded_user("500.00")
    seller = UserFactory()
    order, _ = order_create(
        buyer=buyer,
        seller=seller,
        amount=10 * 10_000_000,
        title="Fuzzed order",
        description="",
        milestones=None,
        client_order_ref="",
        metadata=None,
        marketplace_id="",
        actor=SYSTEM,
    )
    _, secret = api_key_create(
        name="fuzz", scopes=["*"], marketplace_id="", actor_type=AuditLog.ActorType.SYSTEM, actor_id="tests"
    )
    # Another key for the key endpoints to revoke and mint for: revoking the fuzzer's own would end the run.
    api_key, _ = api_key_create(
        name="target", scopes=["read"], marketplace_id="", actor_type=AuditLog.ActorType.SYSTEM, actor_id="tests"
    )
    REAL_IDS.clear()
    REAL_IDS.update(
        user_id=[buyer.public_id, seller.public_id],
        order_id=[order.public_id],
        key_id=[api_key.id],
        withdrawal_id=list(Withdrawal.objects.values_list("public_id", flat=True)[:1]) or ["wd_none"],
        ref=["m1"],
        dispute_id=[dispute["id"]],
        evidence_id=[evidence.json()["data"]["id"]],
    )
    schema = schemathesis.openapi.from_url(live_server.url + "/api/v1/openapi.json")
    schema.hook(flatmap_path_parameters)
    schema.secret = secret
    return schema


def flatmap_path_parameters(context, path_parameters):
    """Half the time a real id, so the handler behind the 404 is fuzzed too."""
    if not path_parameters:
        return st.just(path_parameters)
    real = {name: REAL_IDS[name] for name in path_parameters if REAL_IDS.get(name)}
    with_real_ids = {**path_parameters, **{name: ids[0] for name, ids in real.items()}}
    return st.sampled_from([path_parameters, with_real_ids])


def _fuzzer(operation, *, headers: dict, calls: list):
    """A Hypothesis test of one operation that records each call's status in `calls`."""

    @given(case=operation.as_strategy())
    @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case):
        response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
        calls.append((operation.label, response.status_code))

    return fuzz


@pytest.mark.django_db(transaction=True)
def test_the_api_keeps_its_schema_under_fuzzing(api_schema):
    """Each operation fuzzed in turn; every failing operation is reported, not just the first."""
    headers = {"Authorization": f"Bearer {api_schema.secret}"}
    failures, calls = {}, []
    # GET /events is a stream served by the ASGI application beside Django (this live server is
    # WSGI, where it answers a 503 saying so): its refusals of bad input are tested over ASGI in
    # tests/offerhub/test_event_stream.py, since a fuzzer cannot read an endless answer.
    operations = [
        result.ok() for result in api_schema.get_all_operations() if result.ok().label != "GET /api/v1/events"
    ]
    assert len(operations) > 30  # the whole API is described, not a part of it
    for operation in operations:
        fuzz = _fuzzer(operation, headers=headers, calls=calls)
        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as failure:  # schemathesis groups its failures
            failures[operation.label] = str(failure)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    # Each operation was really exercised, and some calls got past validation to the handler.
    assert {label for label, _ in calls} == {operation.label for operation in operations}
    assert sum(1 for _, status in calls if status < 300) > len(operations)
