from tests.payments.conftest import chain, funded_user  # noqa: F401  (shared fixtures)
