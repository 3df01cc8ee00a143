"""Money typed into the web forms: as strict as the API's money, in the shapes people type."""

from decimal import Decimal

import pytest

from marketplace.forms import ListingForm, MilestoneForm
from offerhub.forms import MoneyFormField
from payments.forms import SimulateDepositForm, WithdrawalForm

pytestmark = pytest.mark.django_db

FULLWIDTH_HUNDRED = "\uff11\uff10\uff10.\uff10\uff10"

# Each form with a money input: (form class, the money field's name).
MONEY_FORMS = [
    pytest.param(SimulateDepositForm, "amount", id="deposit"),
    pytest.param(WithdrawalForm, "amount", id="withdrawal"),
    pytest.param(ListingForm, "price", id="listing-price"),
    pytest.param(MilestoneForm, "amount", id="milestone-amount"),
]


@pytest.mark.parametrize(("form_class", "name"), MONEY_FORMS)
@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("1e3", "such as 100 or 12.50"),
        (FULLWIDTH_HUNDRED, "such as 100 or 12.50"),
        ("100.00\n", "such as 100 or 12.50"),
        (" 1e2 ", "such as 100 or 12.50"),
        ("-5", "without a sign"),
        ("1.234", "at most two decimals"),
    ],
)
def test_every_money_input_refuses_what_is_not_plain_dollars(form_class, name, typed, says):
    form = form_class({name: typed})
    assert not form.is_valid()
    assert any(says in message for message in form.errors[name]), form.errors[name]


@pytest.mark.parametrize(("form_class", "name"), MONEY_FORMS)
@pytest.mark.parametrize(("typed", "amount"), [("100", "100.00"), ("100.5", "100.50"), ("100.50", "100.50")])
def test_every_money_input_takes_dollars_and_gives_cents(form_class, name, typed, amount):
    form = form_class({name: typed})
    form.is_valid()
    assert name not in form.errors
    assert str(form.cleaned_data[name]) == amount


@pytest.mark.parametrize(
    ("typed", "amount"),
    [(" 12.5 ", "12.50"), ("12.", "12.00"), (".5", "0.50"), ("007", "7.00"), ("1000000000.00", "1000000000.00")],
)
def test_the_field_takes_the_shapes_people_type(typed, amount):
    assert str(MoneyFormField().clean(typed)) == amount


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("1,234.50", "without commas"),
        ("+5", "without a sign"),
        ("0", "above $0.00"),
        ("0.00", "above $0.00"),
        ("1000000000.01", "at most $1,000,000,000.00"),
        ("9" * 5000, "at most $1,000,000,000.00"),
        ("\t5", "such as 100 or 12.50"),
        ("12\n.50", "such as 100 or 12.50"),
        ("Infinity", "such as 100 or 12.50"),
        ("NaN", "such as 100 or 12.50"),
        ("", "required"),
        ("   ", "required"),
    ],
)
def test_the_field_says_what_to_type(typed, says):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        MoneyFormField().clean(typed)
    assert any(says in message for message in refused.value.messages), refused.value.messages


def test_zero_can_be_allowed():
    assert MoneyFormField(allow_zero=True).clean("0") == Decimal("0.00")


def test_the_forms_keep_their_widgets():
    assert SimulateDepositForm()["amount"].as_widget().count('type="number"') == 1
    for form, name in ((WithdrawalForm(), "amount"), (ListingForm(), "price"), (MilestoneForm(), "amount")):
        html = form[name].as_widget()
        assert 'type="number"' in html and 'step="0.01"' in html and 'inputmode="decimal"' in html
