from tests.escrow.conftest import trustless_work  # noqa: F401  (shared fixtures)
from tests.marketplace.conftest import support, writer  # noqa: F401
from tests.payments.conftest import chain, funded_user  # noqa: F401
