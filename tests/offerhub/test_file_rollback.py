"""offerhub.files.file_delete_on_rollback: a file stored in a transaction goes when that transaction
(or the savepoint it was stored in) rolls back, however it does, and stays once it commits."""

import contextlib

import pytest
from django.core.files.base import ContentFile
from django.db import DatabaseError, connection, transaction

from offerhub.files import file_delete_on_rollback, private_storage

pytestmark = pytest.mark.django_db(transaction=True)


def stored(name: str) -> str:
    """A file saved in the private storage, deleted again if the transaction around rolls back."""
    storage = private_storage()
    name = storage.save(f"tests/{name}", ContentFile(b"the work"))
    file_delete_on_rollback(storage=storage, name=name)
    return name


def exists(name: str) -> bool:
    return private_storage().exists(name)


@contextlib.contextmanager
def refused_at_commit():
    """A real COMMIT failure: a row referencing nothing, through a deferred foreign key checked
    only when the transaction commits (temporary tables: this connection's, gone with it)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE commit_parent (id integer PRIMARY KEY)")
        cursor.execute(
            "CREATE TEMPORARY TABLE commit_child (parent_id integer"
            " REFERENCES commit_parent DEFERRABLE INITIALLY DEFERRED)"
        )
    try:
        yield lambda: connection.cursor().execute("INSERT INTO commit_child VALUES (1)")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE commit_child, commit_parent")


def test_a_committed_transaction_keeps_its_file():
    with transaction.atomic():
        name = stored("kept.txt")
        assert exists(name)
    assert exists(name)


def test_an_error_in_the_transaction_deletes_the_file():
    with pytest.raises(RuntimeError), transaction.atomic():
        name = stored("undone.txt")
        raise RuntimeError("after the file")
    assert not exists(name)


def test_a_failure_at_commit_deletes_the_file():
    with refused_at_commit() as orphan_row:
        with pytest.raises(DatabaseError), transaction.atomic():
            name = stored("refused.txt")
            orphan_row()  # accepted now, refused by COMMIT
        assert not exists(name)


def test_a_transaction_marked_for_rollback_deletes_the_file():
    with transaction.atomic():  # as the API does for an answer of 500, without raising
        name = stored("answered.txt")
        transaction.set_rollback(True)
    assert not exists(name)


def test_a_savepoint_rolled_back_deletes_its_file_at_once_and_the_rest_commits():
    with transaction.atomic():
        kept = stored("outer.txt")
        with pytest.raises(RuntimeError), transaction.atomic():
            undone = stored("inner.txt")
            raise RuntimeError("the savepoint fails")
        assert not exists(undone)  # at once, not at the end of the transaction
        with transaction.atomic():
            released = stored("released.txt")
        assert exists(released)
    assert exists(kept) and exists(released)


def test_a_savepoint_released_then_the_transaction_rolled_back_deletes_its_file():
    with pytest.raises(RuntimeError), transaction.atomic():
        with transaction.atomic():
            name = stored("released-then-undone.txt")
        raise RuntimeError("the outer transaction fails")
    assert not exists(name)


def test_a_commit_whose_earlier_hook_raises_keeps_the_file():
    def hook_that_raises():
        raise RuntimeError("an earlier non-robust hook")

    with pytest.raises(RuntimeError, match="earlier"), transaction.atomic():
        transaction.on_commit(hook_that_raises)
        name = stored("committed.txt")
    assert exists(name)  # committed: its hook never ran, yet the file is not the rollback's


def test_outside_a_transaction_nothing_is_deleted():
    name = stored("autocommit.txt")
    with pytest.raises(RuntimeError), transaction.atomic():
        raise RuntimeError("another transaction fails")
    assert exists(name)


def test_a_connection_lost_before_commit_keeps_the_file():
    """COMMIT's answer lost with the connection: the server may have committed, so the file
    stays (an orphan at worst, never a committed file lost)."""
    import psycopg

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    dsn = connection.get_connection_params()
    with pytest.raises(DatabaseError), transaction.atomic():
        connection.cursor().execute("SELECT 1")  # the transaction begun on the server
        name = stored("unknown.txt")
        with psycopg.connect(**{k: v for k, v in dsn.items() if k != "cursor_factory"}, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
    connection.close()  # Django's wrapper of the lost connection
    assert exists(name)
    private_storage().delete(name)
