"""The ledger writes with fewer statements (no savepoints, ON CONFLICT inserts, one locking
read of a member's accounts) and keeps its rules: checks before writes, replays, locks."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from payments.balances import Actor, balance_reserve
from payments.ledger import (
    HoldConflict,
    InsufficientFunds,
    hold_post,
    hold_reserve,
    ledger_account,
    ledger_transfer,
    user_accounts,
    user_accounts_locked,
)
from payments.models import Hold, JournalEntry, LedgerAccount
from tests.factories import UserFactory
from tests.payments.test_ledger import assert_books_balance, deposit

Kind = LedgerAccount.Kind


@pytest.mark.django_db(transaction=True)
def test_a_refused_posting_inside_a_transaction_writes_nothing_and_leaves_it_usable():
    user = UserFactory()
    deposit(user, 100, "dep")
    available, held = user_accounts(user)
    with transaction.atomic():
        with pytest.raises(InsufficientFunds):
            ledger_transfer(idempotency_key="too-much", kind="t", source=available, destination=held, amount=101)
        with pytest.raises(InsufficientFunds):
            hold_reserve(user=user, reference="ord_1", amount=101)
        hold_reserve(user=user, reference="ord_2", amount=40)  # the transaction goes on
    assert not JournalEntry.objects.filter(idempotency_key="too-much").exists()
    assert list(Hold.objects.values_list("reference", flat=True)) == ["ord_2"]
    assert_books_balance()


@pytest.mark.django_db(transaction=True)
def test_a_replayed_key_returns_the_first_entry_even_once_the_money_is_spent():
    user = UserFactory()
    deposit(user, 100, "dep")
    available, held = user_accounts(user)
    first = ledger_transfer(idempotency_key="move", kind="t", source=available, destination=held, amount=100)
    again = ledger_transfer(idempotency_key="move", kind="t", source=available, destination=held, amount=100)
    assert (again.pk, again.replayed, first.replayed) == (first.pk, True, False)
    assert_books_balance()


@pytest.mark.django_db(transaction=True)
def test_a_conflicting_hold_is_refused_before_anything_is_written_whatever_the_balance():
    user = UserFactory()
    deposit(user, 100, "dep")
    hold_reserve(user=user, reference="ord_1", amount=60)
    with pytest.raises(HoldConflict):
        hold_reserve(user=user, reference="ord_1", amount=10)  # covered: the INSERT finds the active one
    with pytest.raises(HoldConflict):
        hold_reserve(user=user, reference="ord_1", amount=90)  # not covered: the conflict is still what is said
    assert Hold.objects.count() == 1 and JournalEntry.objects.filter(kind="hold_reserve").count() == 1
    assert_books_balance()


@pytest.mark.django_db(transaction=True)
def test_a_reservation_takes_no_savepoint_and_reads_the_accounts_once():
    user = UserFactory()
    deposit(user, 100, "dep")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        change = balance_reserve(user=user, reference="ref_1", amount=30, actor=Actor("SYSTEM", "t"))
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if "SAVEPOINT" in s]
    assert len([s for s in sql if s.startswith('SELECT "payments_ledgeraccount"')]) == 1  # found and locked at once
    assert (change.before.available, change.after.available, change.after.reserved) == (100, 70, 30)
    available, held = user_accounts(user)
    assert (available.balance, held.balance) == (70, 30)
    assert_books_balance()


@pytest.mark.django_db(transaction=True)
def test_posting_a_hold_with_the_accounts_locked_sets_their_new_balances_without_reading_them_again():
    user = UserFactory()
    deposit(user, 100, "dep")
    hold_reserve(user=user, reference="ord_1", amount=60)
    escrow = ledger_account(kind=Kind.ESCROW, reference="ord_1")
    with transaction.atomic():
        accounts = user_accounts_locked(user)
        with CaptureQueriesContext(connection) as queries:
            hold_post(user=user, reference="ord_1", destination=escrow, kind="escrow_fund", accounts=accounts)
        assert (accounts[0].balance, accounts[1].balance, escrow.balance) == (40, 0, 60)
    reads = [q for q in queries.captured_queries if q["sql"].startswith('SELECT "payments_ledgeraccount"')]
    assert len(reads) == 1  # the destination's lock: the member's accounts are not read again
    assert_books_balance()


@pytest.mark.django_db(transaction=True)
def test_the_balances_left_on_the_accounts_are_the_rows_even_from_a_stale_copy():
    """ledger_post trusts the caller's locked rows not to be stale; were one stale, the balance
    it leaves on the object (read by audit rows and events) is still what the row holds."""
    from django.db.models import F

    user = UserFactory()
    deposit(user, 100, "dep")
    with transaction.atomic():
        available, held = user_accounts_locked(user)
        LedgerAccount.objects.filter(pk=available.pk).update(balance=F("balance") + 7)  # behind the copy's back
        with CaptureQueriesContext(connection) as statements:
            ledger_transfer(
                idempotency_key="stale",
                kind="t",
                source=available,
                destination=held,
                amount=30,
                locked={available.pk: available, held.pk: held},
            )
        assert len(statements) == 1  # still one statement
        assert (available.balance, held.balance) == (77, 30)
    assert LedgerAccount.objects.get(pk=available.pk).balance == 77


@pytest.mark.django_db(transaction=True)
def test_an_account_expected_to_be_new_is_created_in_one_statement_and_found_when_it_was_not():
    from payments.ledger import ledger_account

    with CaptureQueriesContext(connection) as queries:
        created = ledger_account(kind=LedgerAccount.Kind.ESCROW, reference="ord_new", likely_new=True)
    assert len(queries) == 1 and created.pk
    with CaptureQueriesContext(connection) as queries:
        again = ledger_account(kind=LedgerAccount.Kind.ESCROW, reference="ord_new", likely_new=True)
    assert len(queries) == 2 and again.pk == created.pk  # the INSERT found it, then the read
    assert LedgerAccount.objects.filter(code="escrow:ord_new").count() == 1
