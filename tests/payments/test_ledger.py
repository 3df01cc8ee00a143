"""The double-entry ledger and two-phase holds."""

import threading

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from offerhub.models import AppendOnlyError
from payments.ledger import (
    HoldAmountMismatch,
    HoldConflict,
    HoldNotFound,
    InsufficientFunds,
    LedgerError,
    hold_post,
    hold_reserve,
    hold_void,
    ledger_account,
    ledger_post,
    ledger_transfer,
    user_accounts,
)
from payments.models import Hold, JournalEntry, LedgerAccount, Posting
from tests.factories import UserFactory

Kind = LedgerAccount.Kind
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL-only guarantee")


def deposit(user, amount: int, key: str):
    available, _ = user_accounts(user)
    return ledger_transfer(
        idempotency_key=key,
        kind="deposit",
        source=ledger_account(kind=Kind.EXTERNAL_STELLAR),
        destination=available,
        amount=amount,
    )


def assert_books_balance():
    """Every entry sums to zero and every balance row equals the sum of its postings."""
    unbalanced = Posting.objects.values("entry").annotate(total=Sum("amount")).exclude(total=0)
    assert not unbalanced.exists()
    for account in LedgerAccount.objects.all():
        total = account.postings.aggregate(total=Sum("amount"))["total"] or 0
        assert account.balance == total, account.code
        if not account.may_go_negative:
            assert account.balance >= 0, account.code


@pytest.mark.django_db
def test_transfer_posts_one_balanced_entry_and_is_idempotent():
    user = UserFactory()
    first = deposit(user, 25_000_000, "dep-1")
    again = deposit(user, 25_000_000, "dep-1")
    assert first.pk == again.pk
    available, _ = user_accounts(user)
    available.refresh_from_db()
    assert available.balance == 25_000_000
    assert ledger_account(kind=Kind.EXTERNAL_STELLAR).balance == -25_000_000
    assert JournalEntry.objects.count() == 1
    assert_books_balance()


@pytest.mark.django_db
def test_unbalanced_or_empty_entries_are_refused():
    user = UserFactory()
    available, held = user_accounts(user)
    with pytest.raises(LedgerError):
        ledger_post(idempotency_key="x", kind="bad", lines=[(available, 5), (held, -4)])
    with pytest.raises(LedgerError):
        ledger_post(idempotency_key="y", kind="bad", lines=[])
    assert not JournalEntry.objects.exists()


@pytest.mark.django_db
def test_available_never_goes_negative():
    user = UserFactory()
    deposit(user, 100, "dep")
    available, held = user_accounts(user)
    with pytest.raises(InsufficientFunds) as error:
        ledger_transfer(idempotency_key="over", kind="t", source=available, destination=held, amount=101)
    assert error.value.available == 100 and error.value.requested == 101
    assert_books_balance()


@pytest.mark.django_db
def test_the_database_refuses_an_overdraft_even_past_the_service():
    user = UserFactory()
    available, _ = user_accounts(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=available.pk).update(balance=-1)


@pytest.mark.django_db
def test_postings_and_entries_are_append_only():
    user = UserFactory()
    entry = deposit(user, 10, "dep")
    posting = entry.postings.first()
    with pytest.raises(AppendOnlyError):
        posting.save()
    with pytest.raises(AppendOnlyError):
        Posting.objects.filter(pk=posting.pk).update(amount=11)
    with pytest.raises(AppendOnlyError):
        JournalEntry.objects.filter(pk=entry.pk).delete()


@on_postgresql
@pytest.mark.django_db
def test_postgresql_refuses_raw_updates_of_postings():
    user = UserFactory()
    posting = deposit(user, 10, "dep").postings.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE payments_posting SET amount = 99 WHERE id = %s", [posting.pk])


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_postgresql_rejects_an_unbalanced_entry_at_commit():
    user = UserFactory()
    available, _ = user_accounts(user)
    with pytest.raises(DatabaseError, match="unbalanced"), transaction.atomic():
        entry = JournalEntry.objects.create(idempotency_key="raw", kind="raw")
        Posting.objects.create(entry=entry, account=available, amount=500)  # no counter-posting
    assert not JournalEntry.objects.filter(idempotency_key="raw").exists()


@pytest.mark.django_db
def test_hold_lifecycle_reserve_post_and_void():
    user = UserFactory()
    deposit(user, 1_000, "dep")
    available, held = user_accounts(user)
    hold_reserve(user=user, reference="ord_1", amount=600)
    with pytest.raises(HoldConflict):
        hold_reserve(user=user, reference="ord_1", amount=10)
    with pytest.raises(InsufficientFunds):
        hold_reserve(user=user, reference="ord_2", amount=401)
    assert not Hold.objects.filter(reference="ord_2").exists()
    escrow = ledger_account(kind=Kind.ESCROW, reference="ord_1")
    hold_post(user=user, reference="ord_1", destination=escrow, kind="escrow_fund", amount=100)
    hold_void(user=user, reference="ord_1", amount=200)
    with pytest.raises(HoldAmountMismatch):
        hold_void(user=user, reference="ord_1", amount=301)
    hold_post(user=user, reference="ord_1", destination=escrow, kind="escrow_fund")
    with pytest.raises(HoldNotFound):
        hold_void(user=user, reference="ord_1")
    for account in (available, held, escrow):
        account.refresh_from_db()
    assert (available.balance, held.balance, escrow.balance) == (600, 0, 400)
    assert Hold.objects.get(reference="ord_1").status == Hold.Status.POSTED
    hold_reserve(user=user, reference="ord_1", amount=50)  # a finished hold frees its reference
    assert_books_balance()


operations = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "reserve", "void", "post", "withdraw"]), st.integers(1, 5), st.integers(1, 2_000)
    ),
    max_size=30,
)


@pytest.mark.django_db
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_any_sequence_of_operations_keeps_the_books_balanced(steps):
    with transaction.atomic():
        user = UserFactory()
        available, held = user_accounts(user)
        escrow = ledger_account(kind=Kind.ESCROW, reference=f"prop-{user.pk}")
        for number, (action, reference, amount) in enumerate(steps):
            reference = f"ref-{reference}"
            try:
                if action == "deposit":
                    deposit(user, amount, f"{user.pk}-{number}")
                elif action == "withdraw":
                    ledger_transfer(
                        idempotency_key=f"{user.pk}-w{number}",
                        kind="withdraw",
                        source=available,
                        destination=ledger_account(kind=Kind.EXTERNAL_STELLAR),
                        amount=amount,
                    )
                elif action == "reserve":
                    hold_reserve(user=user, reference=reference, amount=amount)
                elif action == "void":
                    hold_void(user=user, reference=reference)
                else:
                    hold_post(user=user, reference=reference, destination=escrow, kind="escrow_fund")
            except (InsufficientFunds, HoldConflict, HoldNotFound):
                pass
            available.refresh_from_db()
            held.refresh_from_db()
            assert available.balance >= 0 and held.balance >= 0
            active = Hold.objects.filter(user=user, status=Hold.Status.ACTIVE).aggregate(t=Sum("remaining"))["t"] or 0
            assert held.balance == active
        assert_books_balance()
        transaction.set_rollback(True)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_reservations_never_overdraw():
    user = UserFactory()
    deposit(user, 10 * 7_000, "dep")  # room for exactly 10 holds of 7,000
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def reserve(number: int):
        try:
            barrier.wait()
            hold_reserve(user=user, reference=f"ord_{number}", amount=7_000)
            outcomes.append("held")
        except InsufficientFunds:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["held"] * 10 + ["refused"] * 10
    available, held = user_accounts(user)
    assert (available.balance, held.balance) == (0, 70_000)
    assert_books_balance()


@pytest.mark.django_db
def test_a_balance_read_costs_the_same_whatever_the_history(django_assert_num_queries):
    from payments.balances import balance_snapshot

    user = UserFactory()
    deposit(user, 10, "first")
    with django_assert_num_queries(1):  # both accounts (available, held) in one read
        assert balance_snapshot(user=user).available == 10
    for number in range(200):
        deposit(user, 10, f"more-{number}")
    with django_assert_num_queries(1):
        assert balance_snapshot(user=user).available == 2_010
