"""Faults of the sandbox's Horizon that several payment tests inject."""

from sandbox.models import SandboxFault


def horizon_down_once() -> None:
    """The next transaction submission is refused (503) before it reaches the ledger."""
    SandboxFault.objects.create(
        service="horizon", method="POST", path_contains="/transactions", status_code=503, remaining=1
    )
