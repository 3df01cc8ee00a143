"""The API's renderer (offerhub.api.renderers) writes what DRF's JSONRenderer wrote, byte for byte."""

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from marketplace.models import Order
from offerhub.api.renderers import ApiJSONRenderer

ours, drf = ApiJSONRenderer(), JSONRenderer()


def json_values(scalars):
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
        max_leaves=30,
    )


exact = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text()
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@given(json_values(exact))
def test_any_json_value_is_written_as_drf_wrote_it(value):
    assert ours.render(value, "application/json") == drf.render(value, "application/json")


@given(json_values(exact | finite_floats))
def test_floats_are_the_same_numbers(value):
    """A float's exponent may be written without its leading zero (1e-9, where DRF wrote 1e-09)."""
    value = {"value": value}  # None alone renders as nothing
    assert json.loads(ours.render(value, "application/json")) == json.loads(drf.render(value, "application/json"))


@pytest.mark.parametrize(
    "value",
    [
        {"createdAt": dt.datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)},  # milliseconds and Z, as DRF
        {"at": dt.datetime(2026, 12, 5, 1, 2, 3), "day": dt.date(2026, 12, 5), "time": dt.time(1, 2, 3, 400)},
        {"amount": Decimal("10.0000001"), "id": uuid.UUID(int=7), "lazy": gettext_lazy("Paid")},
        {"status": Order.Status.FUNDS_RESERVED, "title": "Line\u2028and paragraph\u2029separators", "é": "ü"},
        {"big": 2**70, "list": (1, 2), "nested": [{"a": None, "b": [True, False]}]},
    ],
)
def test_what_orjson_writes_differently_is_written_as_drf_wrote_it(value):
    assert ours.render(value, "application/json") == drf.render(value, "application/json")


def test_an_indented_answer_asked_for_and_no_data():
    value = {"a": [1, {"b": "c"}]}
    assert ours.render(value, "application/json; indent=2") == drf.render(value, "application/json; indent=2")
    assert b"\n" in ours.render(value, "application/json; indent=2")
    assert ours.render(None) == b""


@pytest.mark.django_db
def test_the_api_answers_with_it(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.wsgi_request  # served
    assert response.renderer_context["view"].get_renderers()[0].__class__ is ApiJSONRenderer
