"""The step runner: signs and submits an escrow's queued calls, in order, at most once each.

For every step:
1. ask Trustless Work for the unsigned transaction and verify it is the call we asked for
   (no lock on the signer's account: this is an HTTP request); a fund call is built only
   while the buyer's hold still covers it, else the step fails;
2. under the signer's submission lock (`stellar-account:<address>`): read the account's
   sequence number and give it to the envelope (rewritten if another transaction of the
   signer used the one it was built with), sign it for the role, commit the signed envelope
   and its hash (status SUBMITTED), send it through `/helper/send-transaction`, release;
3. settle it (`escrow.services.step_settle`) when the answer says it landed, lock released.

A lost answer (timeout, 5xx, a crash between 2 and 3) leaves the step SUBMITTED. The next
run looks every hash it signed up on Horizon, then asks the indexer (`validateOnChain`)
whether the call's effect is on the contract, and only then resends — the same envelope
while it can still land (the network applies one hash once), a new one only after it
expired. Steps of one escrow run one at a time (the lease `escrow:<pk>`, offerhub.locks),
and each signer's transactions take turns (its sequence number is one counter). Both locks
are lease rows, nothing held by a database session, so they work behind a transaction-pooling
PgBouncer; a crashed holder blocks others for the lease's TTL at most. The SUBMITTED commit
is fenced on both leases: a run that stalled past its TTL and lost a lease to another run
cannot store (and so cannot send) a second envelope. tx_bad_seq stays the backstop for
transactions sent outside OfferHub: the step is signed again.

The platform's calls are signed by the escrow's platform signer (one of a pool, see
payments.wallets), so different escrows' deploys and releases mostly use different locks. A
drive run by a worker does not wait for a signer busy with another escrow's call: it returns
"signer-busy" with the step untouched, and the task queues it again (escrow.tasks).
"""

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.db.models.expressions import RawSQL
from django.utils import timezone
from stellar_sdk import TransactionBuilder

from escrow.client import TamperedTransaction, TrustlessWorkClient, TrustlessWorkError, verify_unsigned
from escrow.models import Escrow, EscrowStep
from escrow.services import (
    DRIVE_CLAIM,
    Action,
    escrow_deployer,
    escrow_funding_refusal,
    step_fail,
    step_postpone,
    step_settle,
    units,
)
from escrow.signing import envelope_sign
from offerhub.leases import (
    Lease,
    LeaseLost,
    lease_free_claims,
    lease_free_claims_of,
    lease_free_claims_sql,
    lease_look,
    leases_fenced_update,
)
from offerhub.locks import LockTimeout, held_lease, lease_lock
from offerhub.services import audit_record
from payments.models import PlatformAccount, PlatformSigner, Wallet
from payments.stellar import (
    FEE_BUMP_INNER_FAILED,
    StellarError,
    account_load,
    ledger_closed_at,
    refusal_code,
    transaction_lookup,
)
from payments.wallets import PlatformNotReady, platform_account_reused, platform_signer
from payments.withdrawals import account_submission_lock, submission_lock_name

logger = logging.getLogger(__name__)

ESCROW_LOCK_TIMEOUT = 30  # seconds a drive waits for another one of the same escrow, then "busy"
# A drive that gives its worker back when the signer is busy still waits this long for it once
# the call is built: a submission holds the signer's lock for about a ledger (5 s), and a build
# thrown away costs a Trustless Work request (50 a minute per key) and is built again.
SIGNER_WAIT_BEFORE_GIVING_BACK = 7.0
# Rebuilding is safe only for these refusals: the envelope was never applied. A fee bump
# (a platform signer's calls) is refused as tx_fee_bump_inner_failed with one of these inside;
# without its inner code it is looked up again, never failed.
STALE_ENVELOPE_CODES = ("tx_bad_seq", "tx_too_late", "tx_too_early")
# The contract functions our calls invoke (what verify_unsigned expects).
FUNCTIONS = {Action.FUND: "fund"}


class StepPending(Exception):
    """The outcome is not known yet (provider down, answer lost): try again later."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code, self.message = code, message

    @classmethod
    def provider_down(cls, error: TrustlessWorkError) -> "StepPending":
        return cls(error.message, code=error.code)


class StepStopped(Exception):
    """The step reached an end (failed) while being prepared."""


class SignerBusy(Exception):
    """Another run holds the signer's submission lock: give the worker back and come again."""


def escrow_lock_name(escrow_pk: int) -> str:
    return f"escrow:{escrow_pk}"


def escrow_drive(
    *,
    escrow_pk: int,
    client: TrustlessWorkClient | None = None,
    claim_for: timedelta | None = None,
    give_back_when_signer_busy: bool = False,
    escrow_busy_wait: float = ESCROW_LOCK_TIMEOUT,
) -> str:
    """Run the escrow's open steps in order until one must wait. Returns "done", "pending"
    (a run ended without an outcome: recorded on the step, which backs off), "busy" (another
    drive held the escrow for `escrow_busy_wait` seconds: it runs the steps queued meanwhile), or
    "signer-busy" (only with `give_back_when_signer_busy`: another run holds the step's signer;
    the step is untouched, still claimed for `claim_for`, and the caller queues the drive again).
    `claim_for`: claim the open steps for a running drive that long (the task's drive), in the
    statement that reads the first of them."""
    client = client or TrustlessWorkClient()
    claim_until = timezone.now() + claim_for if claim_for else None
    # On PostgreSQL the task's drive claims its steps in the statement that takes the lease, when
    # the lease is free at once (its first try): one statement for both, made only by the holder.
    with_lease = None
    if claim_until and connection.vendor == "postgresql":
        with_lease = _open_steps_claim(escrow_pk, claim_until, condition="{claimed}")
    try:
        with (
            lease_lock(escrow_lock_name(escrow_pk), timeout=escrow_busy_wait, first_with=with_lease) as lease,
            platform_account_reused(),
        ):
            claimed_rows, lease.first_rows = lease.first_rows, None
            while True:
                lease.progress()  # renewed every quarter TTL; LeaseLost if a stall let another drive take over
                # Read under the lease, with its escrow: fresh (only a drive moves an escrow's steps),
                # so the step's first attempt needs no second read. Again after every step: settling
                # one changes the escrow (its contract, its balance) and may queue or fail others.
                if claimed_rows is not None:
                    step = _first_step(claimed_rows)  # read (and claimed) with the lease
                elif claim_until:
                    step = _open_step_claimed(escrow_pk, claim_until)
                else:
                    step = _open_step(escrow_pk)
                claim_until, claimed_rows = None, None
                if step is None:
                    return "done"
                try:
                    ran = step_run(step=step, client=client, fresh=True, give_back=give_back_when_signer_busy)
                    if getattr(ran, "escrow_idle", False):
                        return "done"  # settled, and the settle saw no other open step: none to read
                except StepStopped:
                    continue
                except SignerBusy:
                    return "signer-busy"
                except LeaseLost:
                    raise
                except (StepPending, StellarError) as waiting:
                    _postpone(step, waiting.code, waiting.message)
                    return "pending"
                except PlatformNotReady as waiting:
                    _postpone(step, "PLATFORM_NOT_READY", str(waiting) or "the platform account is not ready")
                    return "pending"
                except Exception as error:  # a bug or a broken record: recorded; it must not stop other escrows
                    logger.exception("escrow step %s raised", step.key)
                    _postpone(step, "INTERNAL_ERROR", f"{type(error).__name__}: {error}")
                    return "pending"
    except LockTimeout:
        if claim_for:  # the drive holding the lease runs them; if it stops, they are due again soon
            EscrowStep.objects.filter(escrow_id=escrow_pk, status__in=EscrowStep.OPEN).update(
                next_attempt_at=timezone.now() + claim_for
            )
        return "busy"  # another worker is driving this escrow
    except LeaseLost as lost:  # this run stalled past a lease: the run that took it carries on
        logger.warning("escrow %s drive stopped: %s", escrow_pk, lost)
        return "busy"


def _signer_lease_sql(step_table: str) -> tuple[str, list]:
    """The column that reads, with the step, whether its signer's submission lock is free (and
    its claim count): a build that starts after this read needs no lease_free_claims of its own."""
    return lease_free_claims_sql(f"%s || {step_table}.signer"), [submission_lock_name("")]


def _signer_lease_keep(step: EscrowStep, value) -> EscrowStep:
    step.signer_lease_read = (submission_lock_name(step.signer), lease_free_claims_of(value))
    return step


def _open_step(escrow_pk: int) -> EscrowStep | None:
    sql, params = _signer_lease_sql(connection.ops.quote_name(EscrowStep._meta.db_table))
    step = (
        EscrowStep.objects.filter(escrow_id=escrow_pk, status__in=EscrowStep.OPEN)
        .select_related("escrow")
        .annotate(signer_lease=RawSQL(sql, params))  # noqa: S611 (constants; the prefix is a parameter)
        .order_by("pk")
        .first()
    )
    return None if step is None else _signer_lease_keep(step, step.signer_lease)


def _open_step_claimed(escrow_pk: int, until) -> EscrowStep | None:
    """_open_step, in the UPDATE that claims every open step of the escrow until `until` (their
    updated_at untouched, as QuerySet.update leaves it): one statement (PostgreSQL)."""
    if connection.vendor != "postgresql":
        EscrowStep.objects.filter(escrow_id=escrow_pk, status__in=EscrowStep.OPEN).update(next_attempt_at=until)
        return _open_step(escrow_pk)
    with connection.cursor() as cursor:
        cursor.execute(*_open_steps_claim(escrow_pk, until))
        return _first_step(cursor.fetchall())


def _open_steps_claim(escrow_pk: int, until, *, condition: str = "TRUE") -> tuple[str, list]:
    """The UPDATE that claims the escrow's open steps until `until` and returns them with their
    escrow (and their signer's lock: see _signer_lease_sql), if `condition` holds."""
    step_fields, escrow_fields = EscrowStep._meta.concrete_fields, Escrow._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = [f"step.{quote(f.column)}" for f in step_fields] + [f"escrow.{quote(f.column)}" for f in escrow_fields]
    signer_lease, signer_params = _signer_lease_sql("step")
    sql = (
        f"UPDATE {EscrowStep._meta.db_table} AS step SET next_attempt_at = %s"  # noqa: S608 (the models' tables)
        f" FROM {Escrow._meta.db_table} AS escrow"
        f" WHERE step.escrow_id = %s AND step.status IN (%s, %s) AND escrow.id = step.escrow_id AND {condition}"
        f" RETURNING {', '.join(columns)}, {signer_lease}"
    )
    return sql, [until, escrow_pk, *EscrowStep.OPEN, *signer_params]


def _first_step(rows: list) -> EscrowStep | None:
    """The first queued of the rows _open_steps_claim returned, with its escrow, or None."""
    if not rows:
        return None
    step_fields, escrow_fields = EscrowStep._meta.concrete_fields, Escrow._meta.concrete_fields
    row = min(rows, key=lambda values: values[0])  # the first queued (pk is the first column)
    step = _from_row(EscrowStep, step_fields, row[: len(step_fields)])
    step.escrow = _from_row(Escrow, escrow_fields, row[len(step_fields) : -1])
    return _signer_lease_keep(step, row[-1])


def _from_row(model, fields, values):
    """An instance from the raw columns of `fields`, converted as a query's would be (JSON)."""
    converted = []
    for field, value in zip(fields, values, strict=True):
        for converter in field.get_db_converters(connection):
            value = converter(value, field.get_col(model._meta.db_table), connection)
        converted.append(value)
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def escrows_due_claim(*, limit: int, stale_after: timedelta, claim_for: timedelta = DRIVE_CLAIM) -> list[int]:
    """The escrows the resume sweeper should drive now, each claimed for `claim_for`.

    Due: an open step untouched for `stale_after` (its worker crashed, its answer was lost),
    and no open step backing off or already claimed by a queued drive. Oldest first; a claimed
    or failing escrow is out of the way until it is due again, so none starves the others.
    The claim is a conditional UPDATE, so two sweeps never queue the same escrow twice."""
    now = timezone.now()
    open_steps = EscrowStep.objects.filter(status__in=EscrowStep.OPEN)
    not_due = open_steps.filter(next_attempt_at__gt=now).values("escrow_id")
    candidates = (
        open_steps.filter(updated_at__lt=now - stale_after)
        .exclude(escrow_id__in=not_due)
        .values("escrow_id")
        .annotate(oldest=Min("updated_at"))
        .order_by("oldest")[:limit]
    )
    claimed = []
    for escrow_pk in [row["escrow_id"] for row in candidates]:
        mine = (
            open_steps.filter(escrow_id=escrow_pk)
            .exclude(next_attempt_at__gt=now)
            .update(next_attempt_at=now + claim_for)
        )
        if mine:
            claimed.append(escrow_pk)
    return claimed


def escrow_funding_confirm(*, user, reference: str, amount: int) -> bool:
    """Whether the escrow funded by `user`'s hold `reference` is funded on chain, settling
    its funding step now if the chain has it (payments' deduct-reserved asks this)."""
    escrow = Escrow.objects.filter(buyer=user, hold_reference=reference, status=Escrow.Status.FUNDING).first()
    if escrow is None or escrow.amount != amount:
        return False
    step = escrow.steps.filter(action=Action.FUND).exclude(status=EscrowStep.Status.FAILED).last()
    if step is None:
        return False
    if step.status != EscrowStep.Status.CONFIRMED:
        escrow_drive(escrow_pk=escrow.pk)
        step.refresh_from_db()
    return step.status == EscrowStep.Status.CONFIRMED


def _postpone(step: EscrowStep, code: str, message: str) -> None:
    logger.warning("escrow step %s waits: %s: %s", step.key, code, message)
    with transaction.atomic():
        _escrow_fence(step)
        step_postpone(step=step, code=code, message=message)


def _fail(step: EscrowStep, *, code: str, message: str) -> EscrowStep:
    """step_fail, only while this run still holds the escrow's lease (LeaseLost if not). A run
    that stalled past its lease judged the step on what it saw then: the run that took over may
    have landed it since, and failing it would leave the ledger holding what the chain paid."""
    with transaction.atomic():
        _escrow_fence(step)
        return step_fail(step=step, code=code, message=message)


def _escrow_fence(step: EscrowStep) -> None:
    lease = held_lease(escrow_lock_name(step.escrow_id))
    if lease is not None:  # None: a step run outside a drive (a test, a shell), which holds no lease
        lease.fence()


def _escrow_lease_progress(step: EscrowStep) -> None:
    """Renew the escrow's lease when due, between provider calls that can each take a while."""
    lease = held_lease(escrow_lock_name(step.escrow_id))
    if lease is not None:
        lease.progress()


def step_run(
    *, step: EscrowStep, client: TrustlessWorkClient, fresh: bool = False, give_back: bool = False
) -> EscrowStep:
    """Run one step. `fresh`: the caller read it (and its escrow) under the escrow's lease just
    now, so the first attempt uses it as it is; every later attempt reads it again.
    `give_back`: raise SignerBusy rather than wait long for the signer's lock (a worker's drive:
    the worker serves other escrows meanwhile); before the build if the lock is held already."""
    for attempt in range(3):
        if attempt or not fresh:
            step.refresh_from_db()
        if step.status in (EscrowStep.Status.CONFIRMED, EscrowStep.Status.FAILED):
            return step
        stored = None
        if step.status == EscrowStep.Status.SUBMITTED:
            landed = _landed(step)
            if landed is True or _effect_visible(step, client):
                return _settle(step, client, response=None)
            _escrow_lease_progress(step)
            if landed is False:
                return _fail(step, code="tx_failed", message="the transaction failed on the network")
            if not _expired(step):
                stored = step.signed_xdr  # the same envelope: it lands once at most
        # Built and verified before the signer's lock: the build is an HTTP call to Trustless Work.
        lock_name = submission_lock_name(step.signer)
        quiet_since = _signer_quiet_since(step, lock_name, first=fresh and not attempt) if stored is None else None
        if stored is None and quiet_since is None and give_back:
            # Held (or held until a moment ago): one more read says whether a claim would wait.
            quiet_since, signer_busy = lease_look(name=lock_name)
            if signer_busy:
                raise SignerBusy(step.signer)
        envelope = _prepare(step, client) if stored is None else None
        _escrow_lease_progress(step)
        with _signer_lock(step.signer, give_back=give_back) as account:
            if stored is None:
                # Nobody held the signer's lock since before the build: no submission of ours
                # can have used the sequence number the envelope was built with.
                if quiet_since is None or account.token != quiet_since + 1:
                    _allocate_sequence(envelope, step.signer)
                signed = _sign_and_store(step, envelope, account)  # renews the lease as it commits
                if signed is None:
                    continue  # the step moved on while it was being built: look again
            else:
                signed = stored
                account.renew()  # still ours right before the envelope leaves (LeaseLost if not)
            try:
                response, error = client.send_transaction(signed), None
            except TrustlessWorkError as refused:
                response, error = None, refused
        if error is None:
            return _settle(step, client, response=response)
        if error.status != 400:
            raise StepPending.provider_down(error) from None
        refused = _refusal_code(error)
        if refused in STALE_ENVELOPE_CODES or refused == FEE_BUMP_INNER_FAILED:
            if stored is not None or refused == FEE_BUMP_INNER_FAILED:  # the latter: maybe stale, look it up
                # A resent envelope refused for its sequence may be refused because it landed
                # already (its answer was the one lost): it stays SUBMITTED, looked up again
                # later, and is rebuilt only once it can no longer land (its time bounds).
                raise StepPending(
                    f"the resent transaction was refused ({refused}); looking it up again before building another",
                    code="RESENT_REFUSED",
                )
            EscrowStep.objects.filter(pk=step.pk).update(expires_at=timezone.now() - timedelta(days=1))
            continue  # never applied (its sequence was not the account's next): sign a fresh one
        return _fail(step, code=error.provider_code or refused or error.message, message=error.message)
    raise StepPending("the signer's sequence number kept changing; trying again later", code="SEQUENCE_CHANGING")


def _refusal_code(error: TrustlessWorkError) -> str:
    """Why the network refused a sent envelope: Horizon's result codes when passed on (a fee
    bump refused for its inner transaction gives the inner's code there), else the message."""
    codes = error.details.get("result_codes") or {}
    if not codes.get("transaction"):
        codes = {"transaction": error.message if error.message.startswith("tx_") else error.provider_code}
    return refusal_code(codes)


def _signer_quiet_since(step: EscrowStep, lock_name: str, *, first: bool) -> int | None:
    """lease_free_claims of the signer's lock before the build: as the drive read it with the step
    (earlier still, so as sound) on the first attempt of a step read fresh, else read now."""
    read = step.__dict__.pop("signer_lease_read", None)
    if first and read is not None and read[0] == lock_name:
        return read[1]
    return lease_free_claims(name=lock_name)


# --- Preparing --------------------------------------------------------------------------


def _body(step: EscrowStep, escrow: Escrow) -> dict:
    index = {"milestoneIndex": str(step.milestone_index)} if step.milestone_index is not None else {}
    contract = {"contractId": escrow.contract_id}
    action = step.action
    if action == Action.DEPLOY:
        return _deploy_body(escrow, signer=step.signer)
    if action == Action.FUND:
        return contract | {"signer": step.signer, "amount": units(int(step.params["amount"]))}
    if action == Action.MILESTONE_STATUS:
        return (
            contract
            | index
            | {
                "newStatus": step.params["status"],
                "newEvidence": step.params["evidence"],
                "serviceProvider": step.signer,
            }
        )
    if action == Action.APPROVE:
        return contract | index | {"approver": step.signer}
    if action in (Action.RELEASE, Action.RELEASE_MILESTONE):
        return contract | index | {"releaseSigner": step.signer}
    if action in (Action.DISPUTE, Action.DISPUTE_MILESTONE):
        return contract | index | {"signer": step.signer}
    distributions = [{"address": a, "amount": units(int(amount))} for a, amount in step.params["distributions"]]
    return contract | index | {"disputeResolver": step.signer, "distributions": distributions}


def _deploy_body(escrow: Escrow, *, signer: str) -> dict:
    milestones = list(escrow.milestones.all())
    body = {
        "signer": signer,
        "engagementId": escrow.engagement_id,
        "title": escrow.title,
        "description": escrow.description or escrow.title,
        "platformFee": escrow.platform_fee_percent,
        "trustline": {"address": settings.STELLAR_USDC_ISSUER, "symbol": "USDC"},
        "roles": escrow.roles,
    }
    if escrow.is_multi:
        receiver = escrow.roles["serviceProvider"]
        body["milestones"] = [
            {"description": m.title, "amount": units(m.amount), "receiver": receiver} for m in milestones
        ]
    else:
        body["amount"] = units(escrow.amount)
        body["milestones"] = [{"description": m.title} for m in milestones]
    return body


def _expected_arguments(step: EscrowStep, escrow: Escrow) -> dict:
    """What the unsigned call must say, beyond its source, contract and function."""
    expected = {"signer": step.signer}
    if step.action == Action.DEPLOY:
        return expected if escrow.is_multi else expected | {"amount": escrow.amount}
    expected["contractId"] = escrow.contract_id
    if step.milestone_index is not None:
        expected["index"] = step.milestone_index
    if step.action == Action.FUND:
        expected["amount"] = int(step.params["amount"])
    elif step.action == Action.RELEASE:
        expected["amount"] = escrow.amount
    elif step.action == Action.RELEASE_MILESTONE:
        expected["amount"] = escrow.milestones.get(index=step.milestone_index).amount
    return expected


def _unsigned(step: EscrowStep, escrow: Escrow, client: TrustlessWorkClient) -> str:
    body = _body(step, escrow)
    if step.action == Action.DEPLOY:
        return client.deploy(escrow.type, body)
    try:
        return client.escrow_call(escrow.type, step.action, body)
    except TrustlessWorkError as error:
        if error.code != "ESCROW_NOT_FOUND":
            raise
        # The indexer has not seen the deploy yet: point it at the deploy transaction, once.
        deploy = escrow.steps.filter(action=Action.DEPLOY, status=EscrowStep.Status.CONFIRMED).last()
        if deploy is None or not deploy.tx_hash:
            raise
        client.index_transaction(deploy.tx_hash)
        return client.escrow_call(escrow.type, step.action, body)


def _signer(step: EscrowStep) -> Wallet | PlatformAccount | PlatformSigner:
    """The account whose key signs the step: the platform's (its signer for the escrow, or the
    treasury for escrows from before the signer pool) for the platform's roles, else a wallet."""
    roles = step.escrow.roles
    if step.signer in (roles.get("releaseSigner"), roles.get("disputeResolver"), roles.get("platformAddress")):
        return platform_signer(step.signer)
    return Wallet.objects.get(public_key=step.signer)


def _prepare(step: EscrowStep, client: TrustlessWorkClient):
    """Build and verify the unsigned call (no lock held: the build is an HTTP request)."""
    escrow = step.escrow
    if step.action == Action.FUND:
        refusal = escrow_funding_refusal(escrow=escrow, amount=int(step.params["amount"]))
        if refusal is not None:
            _fail(step, code=refusal[0], message=refusal[1])
            raise StepStopped
    try:
        unsigned = _unsigned(step, escrow, client)
        envelope = verify_unsigned(
            unsigned,
            source=step.signer,
            contract_id=None if step.action == Action.DEPLOY else escrow.contract_id,
            function=f"deploy-{escrow.type}"
            if step.action == Action.DEPLOY
            else FUNCTIONS.get(step.action, step.action),
            arguments=_expected_arguments(step, escrow),
        )
    except TamperedTransaction as tampered:  # refuse and record: it must never be signed
        audit_record(
            action="escrow.transaction_refused",
            resource_type="Escrow",
            resource_id=escrow.public_id,
            actor_type="SYSTEM",
            actor_id="escrow",
            payload_after={"step": step.key, "differences": tampered.details.get("differences", [])},
            result="FAILURE",
        )
        _fail(step, code="TAMPERED_TRANSACTION", message=tampered.message)
        raise StepStopped from None
    except TrustlessWorkError as error:
        if error.status == 400 and _platform_signer_missing(step):
            raise PlatformNotReady(f"the platform signer {step.signer} is not on chain yet") from None
        if error.status == 400:  # the contract's rules refuse the call: final
            _fail(step, code=error.provider_code or error.code, message=error.message)
            raise StepStopped from None
        raise StepPending.provider_down(error) from None
    return envelope


def _platform_signer_missing(step: EscrowStep) -> bool:
    """A platform signer the network does not know (not funded yet): the build is refused, but
    platform_bootstrap can still fund it, so the step waits rather than fails."""
    roles = step.escrow.roles
    platform_roles = (roles.get("releaseSigner"), roles.get("disputeResolver"), roles.get("platformAddress"))
    return step.signer in platform_roles and account_load(step.signer) is None


@contextlib.contextmanager
def _signer_lock(signer: str, *, give_back: bool) -> Iterator[Lease]:
    """The signer's submission lock; with `give_back`, SignerBusy after a short wait for it."""
    if not give_back:
        with account_submission_lock(signer) as lease:
            yield lease
        return
    claimed = False
    try:
        with lease_lock(submission_lock_name(signer), timeout=SIGNER_WAIT_BEFORE_GIVING_BACK) as lease:
            claimed = True
            yield lease
    except LockTimeout:
        if claimed:  # raised by the block, not by the wait for the lock
            raise
        raise SignerBusy(signer) from None


def _sign_and_store(step: EscrowStep, envelope, account: Lease) -> str | None:
    """Under the signer's lock, the envelope numbered: sign it, and commit the envelope and its
    hash (SUBMITTED) before anything is sent. The commit is fenced (and so renews the leases):
    it is refused (LeaseLost) if a stall let another holder take the signer's or the escrow's
    lease. None if the step changed since it was read (another run got there first)."""
    signed = envelope_sign(envelope=envelope, signer=_signer(step))
    outer = TransactionBuilder.from_xdr(signed, settings.STELLAR_NETWORK_PASSPHRASE)
    with transaction.atomic():
        # One conditional UPDATE: only if the step is still as it was read (status and attempts;
        # its hashes change only with its attempts), in the statement that fences both leases.
        tx_hash = outer.hash_hex()
        stored = {
            "signed_xdr": signed,
            "tx_hash": tx_hash,
            "attempted_hashes": [*step.attempted_hashes, tx_hash],
            "expires_at": _max_time(envelope),
            "attempts": step.attempts + 1,
            "status": EscrowStep.Status.SUBMITTED,
        }
        current = EscrowStep.objects.filter(pk=step.pk, status=step.status, attempts=step.attempts)
        escrow_lease = held_lease(escrow_lock_name(step.escrow_id))
        leases = [account] if escrow_lease is None else [escrow_lease, account]
        if not leases_fenced_update(leases, current, **stored, updated_at=timezone.now()):
            return None
    for field, value in stored.items():
        setattr(step, field, value)
    return signed


def _allocate_sequence(envelope, signer: str) -> None:
    """The signer's next sequence number, read under its lock (only when someone held the lock
    since the build began: another transaction of the signer may have used the number the
    envelope carries). It is rewritten before signing: the signature covers it, and Soroban's
    source-account authorisation does not depend on it. A transaction sent outside OfferHub
    meanwhile still gets tx_bad_seq, and the step is signed again."""
    account = account_load(signer)
    if account is None:
        raise StellarError("PROVIDER_ERROR", f"the signer {signer} does not exist on the network")
    envelope.transaction.sequence = int(account["sequence"]) + 1


def _max_time(envelope):
    bounds = envelope.transaction.preconditions.time_bounds if envelope.transaction.preconditions else None
    if bounds is None or not bounds.max_time:
        return None
    return datetime.fromtimestamp(bounds.max_time, tz=UTC)


# --- Finding out what happened ----------------------------------------------------------


def _landed(step: EscrowStep) -> bool | None:
    """True if one of the step's envelopes succeeded, False if the latest failed on chain,
    None if Horizon knows none of them."""
    verdict = None
    for tx_hash in step.attempted_hashes:
        found = transaction_lookup(tx_hash)
        if found is None:
            continue
        if found.get("successful"):
            if tx_hash != step.tx_hash:
                EscrowStep.objects.filter(pk=step.pk).update(tx_hash=tx_hash)
                step.tx_hash = tx_hash
            return True
        verdict = False if tx_hash == step.tx_hash else verdict
    return verdict


def _expired(step: EscrowStep) -> bool:
    """The stored envelope can no longer land, by the network's clock."""
    if not step.signed_xdr:
        return True
    if step.expires_at is None:
        return False
    margin = timedelta(seconds=settings.STELLAR_TX_EXPIRY_MARGIN_SECONDS)
    return ledger_closed_at() > step.expires_at + margin


def _chain_escrow(escrow: Escrow, client: TrustlessWorkClient) -> dict | None:
    if not escrow.contract_id:
        return None
    found = client.get_escrows([escrow.contract_id], validate_on_chain=True)
    return found[0] if found else None


def _deployed_contract(escrow: Escrow, client: TrustlessWorkClient) -> str | None:
    """The contract deployed for this order, found by signer and engagement id."""
    found = client.get_escrows_by_signer(escrow_deployer(escrow), engagementId=escrow.engagement_id)
    ids = {item["contractId"] for item in found if item.get("engagementId") == escrow.engagement_id}
    if len(ids) > 1:
        found = f"{len(ids)} contracts carry engagement {escrow.engagement_id}: support must look"
        raise StepPending(found, code="DUPLICATE_CONTRACTS")
    return ids.pop() if ids else None


def _effect_visible(step: EscrowStep, client: TrustlessWorkClient) -> bool:
    """Whether the contract already shows what the step asked for (the indexer, validated on chain)."""
    escrow = step.escrow
    try:
        if step.action == Action.DEPLOY:
            return _deployed_contract(escrow, client) is not None
        chain = _chain_escrow(escrow, client)
    except TrustlessWorkError as error:
        raise StepPending.provider_down(error) from None
    if chain is None:
        return False
    milestone = chain["milestones"][step.milestone_index] if step.milestone_index is not None else {}
    flags = milestone.get("flags") or chain.get("flags") or {}
    if step.action == Action.FUND:
        return chain["balance"] >= units(escrow.balance + int(step.params["amount"]))
    if step.action == Action.MILESTONE_STATUS:
        return milestone.get("status") == step.params["status"] and milestone.get("evidence") == step.params["evidence"]
    if step.action == Action.APPROVE:
        return bool(milestone.get("approved") or (milestone.get("flags") or {}).get("approved"))
    if step.action in (Action.RELEASE, Action.RELEASE_MILESTONE):
        return bool(flags.get("released"))
    if step.action in (Action.DISPUTE, Action.DISPUTE_MILESTONE):
        return bool(flags.get("disputed"))
    return bool(flags.get("resolved"))


def _settle(step: EscrowStep, client: TrustlessWorkClient, *, response: dict | None) -> EscrowStep:
    contract_id = None
    if step.action == Action.DEPLOY:
        contract_id = (response or {}).get("contractId")
        if not contract_id:
            try:
                contract_id = _deployed_contract(step.escrow, client)
            except TrustlessWorkError as error:
                raise StepPending.provider_down(error) from None
            if contract_id is None:
                # Landed (Horizon says so) but not indexed yet: point the indexer at it.
                try:
                    client.index_transaction(step.tx_hash)
                    contract_id = _deployed_contract(step.escrow, client)
                except TrustlessWorkError as error:
                    raise StepPending.provider_down(error) from None
            if contract_id is None:
                raise StepPending("the deploy landed but its contract is not indexed yet", code="NOT_INDEXED")
    return step_settle(step=step, contract_id=contract_id)
