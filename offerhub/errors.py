"""One error base for every domain service, in the API's codes (API.md §1.7).

Services raise `ServiceError(code, message, field=…, details=…)`; the API maps it to its
envelope in one place (offerhub.api.errors) and the web views show `message` by `field`.
"""

STATUS_BY_CODE = {
    "UNAUTHORIZED": 401,
    "INVALID_API_KEY": 401,
    "INSUFFICIENT_SCOPE": 403,
    "VALIDATION_ERROR": 400,
    "INVALID_AMOUNT_FORMAT": 400,
    "INVALID_CURRENCY": 400,
    "MISSING_REQUIRED_FIELD": 400,
    "INVALID_REQUEST": 400,
    "INVALID_AMOUNT": 400,
    "USER_NOT_FOUND": 404,
    "USER_ALREADY_EXISTS": 409,
    "AIRTM_USER_NOT_LINKED": 422,
    "AIRTM_USER_INVALID": 422,
    "AIRTM_USER_ALREADY_LINKED": 409,
    "INSUFFICIENT_FUNDS": 422,
    "FUNDS_ALREADY_RESERVED": 409,
    "RESERVE_NOT_FOUND": 404,
    "RESERVE_MISMATCH_AMOUNT": 422,
    "BALANCE_DISCREPANCY": 409,
    "BALANCE_CONCURRENCY_CONFLICT": 409,
    "ORDER_NOT_FOUND": 404,
    "INVALID_STATE": 409,
    "ESCROW_ALREADY_EXISTS": 409,
    "ESCROW_NOT_READY": 409,
    "DISPUTE_ALREADY_OPEN": 409,
    "ESCROW_NOT_FOUND": 404,
    "ESCROW_ALREADY_FUNDED": 409,
    "ESCROW_INSUFFICIENT_FUNDS": 422,
    "ESCROW_INVALID_STATE": 409,
    "ESCROW_FUNDING_FAILED": 422,
    "MILESTONE_NOT_FOUND": 404,
    "PROVIDER_ERROR": 502,
    "PROVIDER_TIMEOUT": 504,
    "PROVIDER_RATE_LIMITED": 502,
    "PROVIDER_UNAVAILABLE": 503,
    "STELLAR_NETWORK_ERROR": 502,
    "WEBHOOK_SIGNATURE_INVALID": 401,
    "WITHDRAWAL_NOT_FOUND": 404,
    "WITHDRAWAL_NOT_COMMITTABLE": 409,
    "WITHDRAWAL_DESTINATION_INVALID": 422,
    "TOPUP_NOT_FOUND": 404,
    "DISPUTE_NOT_FOUND": 404,
    "IDEMPOTENCY_KEY_REUSED": 409,
    "IDEMPOTENCY_KEY_IN_PROGRESS": 409,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    # [X] the database could not serve the request now (its pool had no free connection in
    # time, or PostgreSQL refused the connection): nothing was applied; retry after Retry-After.
    "SERVICE_UNAVAILABLE": 503,
    # [X] transport refusals: a body over the size limit, a body that is not JSON.
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "WALLET_NOT_FOUND": 404,
    "API_KEY_NOT_FOUND": 404,
    "ORDER_REF_CONFLICT": 409,
    # A participant acting outside their role (the web pages' actors; API keys act as the platform).
    "FORBIDDEN": 403,
    # [X] Airtm (payments.airtm): the platform's own Airtm balance cannot cover a payout
    # (Airtm 415016). Not the member's funds: nothing was sent, the operator must top up; retry later.
    "AIRTM_INSUFFICIENT_BALANCE": 503,
    # [X] Airtm already holds a payin or payout under our code for different terms (415029/415056
    # after the look-up): a code was reused, nothing new was created.
    "AIRTM_CODE_CONFLICT": 409,
}


class ServiceError(Exception):
    """A refusal: `code` is one of STATUS_BY_CODE's, `field` names the input it is about.

    Provider adapters' errors either are one or are translated into one: `StellarError`
    (payments.stellar) is a plain subclass raised with a PROVIDER_* code; `TrustlessWorkError`
    (escrow.client) is not a ServiceError: the escrow code translates it (escrow.runner into a step
    left pending or failed, escrow.selectors into EscrowServiceUnavailable) before it leaves them.
    """

    code = "INTERNAL_ERROR"
    message = ""
    field = ""
    details: dict = {}
    headers: dict = {}

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = "",
        details: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field or ""
        self.details = details or {}
        self.headers = headers or {}

    @property
    def status(self) -> int:
        # A code missing from the table is a refusal we did not classify: a client error, never a 500.
        return STATUS_BY_CODE.get(self.code, 400)

    def __str__(self):
        return f"{self.code}: {self.message}"
