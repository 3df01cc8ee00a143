"""The order state machine, exhaustively: every (state, transition) pair against API.md §16."""

import pytest
from django_fsm import can_proceed

from marketplace.models import Order

S = Order.Status
# transition → the states it may leave from (API.md §16); every other state must refuse it.
ALLOWED = {
    "reserve": {S.ORDER_CREATED},
    "cancel": {S.ORDER_CREATED, S.FUNDS_RESERVED},
    "escrow_create": {S.FUNDS_RESERVED},
    "escrow_deployed": {S.ESCROW_CREATING},
    "escrow_deploy_failed": {S.ESCROW_CREATING},
    "escrow_funded": {S.ESCROW_FUNDING},
    "start": {S.ESCROW_FUNDED},
    "request_release": {S.IN_PROGRESS},
    "request_refund": {S.IN_PROGRESS},
    "dispute": {S.IN_PROGRESS},
    "last_milestone_released": {S.IN_PROGRESS},
    "payout_rejected": {S.RELEASE_REQUESTED, S.REFUND_REQUESTED},
    "released": {S.RELEASE_REQUESTED},
    "refunded": {S.REFUND_REQUESTED},
    "resolve_release": {S.DISPUTED},
    "resolve_refund": {S.DISPUTED},
    "resolve_split": {S.DISPUTED},
    "close": {S.RELEASED, S.REFUNDED},
}
TARGETS = {
    "reserve": S.FUNDS_RESERVED,
    "cancel": S.CLOSED,
    "escrow_create": S.ESCROW_CREATING,
    "escrow_deployed": S.ESCROW_FUNDING,
    "escrow_deploy_failed": S.FUNDS_RESERVED,
    "escrow_funded": S.ESCROW_FUNDED,
    "start": S.IN_PROGRESS,
    "request_release": S.RELEASE_REQUESTED,
    "request_refund": S.REFUND_REQUESTED,
    "dispute": S.DISPUTED,
    "last_milestone_released": S.RELEASED,
    "payout_rejected": S.IN_PROGRESS,
    "released": S.RELEASED,
    "refunded": S.REFUNDED,
    "resolve_release": S.RELEASE_REQUESTED,
    "resolve_refund": S.REFUND_REQUESTED,
    "resolve_split": S.RELEASED,
    "close": S.CLOSED,
}
PAIRS = [(state, name) for state in S.values for name in ALLOWED]


def test_the_table_covers_every_state_and_only_closed_is_terminal():
    sources = set().union(*ALLOWED.values())
    assert sources == set(S.values) - {S.CLOSED}


@pytest.mark.parametrize(("state", "name"), PAIRS, ids=[f"{s}-{n}" for s, n in PAIRS])
def test_transition(state, name):
    order = Order(status=state, amount=1, title="t")
    method = getattr(order, name)
    allowed = state in ALLOWED[name]
    assert can_proceed(method, check_conditions=False) is allowed
    if allowed:
        if name == "request_release":
            return  # guarded by a condition on saved milestones: covered by the service tests
        method() if name != "cancel" else method(reason="test")
        assert order.status == TARGETS[name]


# Who may take each transition (the system — tasks, the step runner, API keys — takes all but support's).
WHO = {
    "reserve": {"buyer", "support", "system"},
    "cancel": {"buyer", "seller", "support", "system"},
    "escrow_create": {"buyer", "support", "system"},
    "request_release": {"buyer", "support", "system"},
    "request_refund": {"seller", "support", "system"},
    "dispute": {"buyer", "seller", "support", "system"},
    "resolve_release": {"support"},
    "resolve_refund": {"support"},
    "resolve_split": {"support"},
}
SYSTEM_ONLY = set(ALLOWED) - set(WHO)
ROLES = ("buyer", "seller", "stranger", "support", "system")


def actor(role: str):
    from types import SimpleNamespace

    from marketplace.orders import OrderActor

    user = SimpleNamespace(pk={"buyer": 1, "seller": 2, "stranger": 3}.get(role, 4))
    if role == "system":
        return OrderActor("SYSTEM", "orders")
    return OrderActor("SUPPORT" if role == "support" else "USER", role, user, is_support=role == "support")


@pytest.mark.parametrize("name", sorted(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_who_may_take_a_transition(name, role):
    state = next(iter(ALLOWED[name]))
    order = Order(status=state, amount=1, title="t", buyer_id=1, seller_id=2)
    expected = role in WHO.get(name, {"system"})
    meta = getattr(order, name)._django_fsm  # permission alone (conditions are the service tests')
    assert meta.has_transition_perm(order, state, actor(role)) is expected
    if name in SYSTEM_ONLY:
        assert role != "support" or not expected
