"""The faster end of transactional tests (tests/database_reset.py) leaves the database as
Django's flush does: every table empty but what post_migrate makes, and that as post_migrate
makes it, even when a test changed it or wrote to the append-only tables."""

from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import TransactionTestCase

from backoffice.roles import SUPPORT_AGENT
from offerhub.models import AuditLog
from tests.factories import UserFactory


def rows_per_table() -> dict[str, int]:
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cursor:
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


def roles() -> dict[str, set[str]]:
    return {group.name: {p.codename for p in group.permissions.all()} for group in Group.objects.all()}


def test_the_end_of_a_transactional_test_leaves_what_djangos_flush_leaves(transactional_db):
    end_of_test = TransactionTestCase()._fixture_teardown
    end_of_test()  # the state every transactional test starts from
    after_flush, roles_after_flush = rows_per_table(), roles()
    assert after_flush["auth_permission"] and roles_after_flush[SUPPORT_AGENT]  # post_migrate's own
    assert not after_flush["marketplace_user"] and not after_flush["offerhub_auditlog"]
    permission_ids = set(Permission.objects.values_list("pk", flat=True))

    # Rows in ordinary tables and in the append-only audit log (its trigger refuses DELETE).
    UserFactory()
    AuditLog.objects.create(action="test.written", actor_type=AuditLog.ActorType.SYSTEM, actor_id="tests")
    end_of_test()
    assert rows_per_table() == after_flush and roles() == roles_after_flush
    assert set(Permission.objects.values_list("pk", flat=True)) == permission_ids  # no full flush was needed

    # A test that changes what post_migrate made gets Django's full flush back.
    Group.objects.get(name=SUPPORT_AGENT).permissions.clear()
    Group.objects.create(name="made by a test")
    UserFactory()
    end_of_test()
    assert rows_per_table() == after_flush and roles() == roles_after_flush
