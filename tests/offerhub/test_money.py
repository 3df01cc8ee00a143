"""offerhub.money: the API's money strings written in integers agree with the Decimal rounding."""

from hypothesis import given
from hypothesis import strategies as st

from offerhub.money import money_dollars, money_from_stroops


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))  # every amount a bigint column holds
def test_an_api_money_string_is_the_decimal_rounded_toward_zero(stroops):
    assert money_from_stroops(stroops) == str(money_dollars(stroops))


def test_cents_are_cut_never_rounded_up_and_the_sign_stays():
    assert money_from_stroops(125_000_000) == "12.50"
    assert money_from_stroops(129_999_999) == "12.99"
    assert money_from_stroops(0) == "0.00"
    assert money_from_stroops(99_999) == "0.00"
    assert money_from_stroops(-99_999) == "-0.00"
    assert money_from_stroops(-129_999_999) == "-12.99"
