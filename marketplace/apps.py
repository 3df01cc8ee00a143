from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self):
        from marketplace import orders  # noqa: F401  (connects the escrow step listeners)
        from payments.balances import order_reference_checks

        if order_reference_exists not in order_reference_checks:
            order_reference_checks.append(order_reference_exists)


def order_reference_exists(reference: str) -> bool:
    """Whether a hold reference is an order's id (the balance endpoints must leave it alone)."""
    from marketplace.models import Order

    return Order.objects.filter(public_id=reference).exists()
