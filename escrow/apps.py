from django.apps import AppConfig


class EscrowConfig(AppConfig):
    """Trustless Work client, escrow records, signing, sync and the public escrow viewer."""

    name = "escrow"
    verbose_name = "Escrow"

    def ready(self):
        import escrow.webhooks  # noqa: F401  (registers the Trustless Work webhook processor)
        from escrow.runner import escrow_funding_confirm
        from escrow.services import step_settled
        from payments.balances import escrow_funding_confirmers

        if escrow_funding_confirm not in escrow_funding_confirmers:
            escrow_funding_confirmers.append(escrow_funding_confirm)
        step_settled.connect(_forget_cached_contract, dispatch_uid="escrow-viewer-cache")


def _forget_cached_contract(sender, step, escrow, **kwargs):
    """The public viewer caches contract reads for seconds; a confirmed step makes them stale."""
    from django.db import transaction

    from escrow.selectors import contract_forget

    if escrow.contract_id:
        contract_id = escrow.contract_id
        transaction.on_commit(lambda: contract_forget(contract_id))
