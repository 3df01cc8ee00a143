"""A provider-backed call reads its step's outcome with several queries; the step may end
between them. Its answer must be the step's outcome, never a refusal that did not happen
(4 concurrent API clients got 502 "Trustless Work did not complete the step" for releases
that had succeeded)."""

import pytest

from marketplace.models import Order
from marketplace.orders import SYSTEM, order_create
from marketplace.orders_api import ProviderStep, provider_step_outcome
from offerhub.errors import ServiceError
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def an_order() -> Order:
    order, _ = order_create(buyer=UserFactory(), seller=UserFactory(), amount=10_000_000, title="Logo", actor=SYSTEM)
    return order


def done(order: Order, escrow) -> bool:
    return Order.objects.filter(pk=order.pk, title="done").exists()


def test_a_step_that_ends_between_the_checks_is_answered_as_finished():
    order = an_order()

    def ends_while_asked(o, e) -> bool:
        # The step settles after `succeeded` was read and before `pending` is: as another
        # process's commit would land between the two reads.
        Order.objects.filter(pk=o.pk).update(title="done")
        return False

    spec = ProviderStep(actions=("fund",), pending=ends_while_asked, succeeded=done)
    answered, finished = provider_step_outcome(order, spec, after=0)
    assert finished
    assert answered.title == "done"


def test_a_step_neither_running_nor_done_is_still_a_refusal():
    order = an_order()
    spec = ProviderStep(actions=("fund",), pending=lambda o, e: False, succeeded=done)
    with pytest.raises(ServiceError) as refused:
        provider_step_outcome(order, spec, after=0)
    assert refused.value.code == "PROVIDER_ERROR"


def test_a_running_step_is_not_finished():
    order = an_order()
    spec = ProviderStep(actions=("fund",), pending=lambda o, e: True, succeeded=done)
    assert provider_step_outcome(order, spec, after=0)[1] is False
