from django.apps import AppConfig
from django.db.models.signals import post_migrate


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self):
        from marketplace import notifications, orders  # noqa: F401  (escrow step listeners, e-mail subscribers)
        from payments.balances import order_reference_checks
        from payments.history import order_lookups

        if order_reference_exists not in order_reference_checks:
            order_reference_checks.append(order_reference_exists)
        if order_history_refs not in order_lookups:
            order_lookups.append(order_history_refs)
        post_migrate.connect(catalog_triggers_ensure, sender=self)


def catalog_triggers_ensure(*, using: str = "default", **kwargs) -> None:
    """SQLite (embedded mode) drops a table's triggers when a migration rebuilds it, which is how
    it alters a table: the catalogue version's triggers are created again where missing after
    every migrate, or catalogue pages would stop seeing writes (marketplace.catalog_pages).
    PostgreSQL alters tables in place and keeps them."""
    from importlib import import_module

    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    if ("marketplace", "0013_catalog_version") not in MigrationRecorder(connection).applied_migrations():
        return  # migrated back before it
    migration = import_module("marketplace.migrations.0013_catalog_version")
    with connection.cursor() as cursor:
        for statement in migration.sqlite_statements():
            cursor.execute(statement)


def order_reference_exists(reference: str) -> bool:
    """Whether a hold reference is an order's id (the balance endpoints must leave it alone)."""
    from marketplace.models import Order

    return Order.objects.filter(public_id=reference).exists()


def order_history_refs(user, references: set[str]) -> dict:
    """The orders among `references` that `user` buys or sells, as the wallet history names and links them."""
    from django.db.models import Q
    from django.urls import reverse

    from marketplace.models import Order
    from payments.history import OrderRef

    if not references:
        return {}
    orders = Order.objects.filter(Q(buyer=user) | Q(seller=user), public_id__in=references).values_list(
        "public_id", "title", "buyer_id", "outcome"
    )
    return {
        public_id: OrderRef(
            title=title,
            url=reverse("order-detail", args=[public_id]),
            is_buyer=buyer_id == user.pk,
            canceled=outcome == Order.Outcome.CANCELED,
        )
        for public_id, title, buyer_id, outcome in orders
    }
