"""Signing Trustless Work transactions for the role that must sign, with our fee approach.

The role's key signs the verified transaction; the platform account (the treasury) wraps it
in a fee bump and pays the fee, so a user's wallet (0 XLM) can approve, fund or dispute like
any account. The platform's signer accounts (deploy, release signer, dispute resolver) are
fee-bumped the same way: they hold only their reserve and never run out of XLM, and a fee bump
does not use the treasury's sequence number, so signing one takes no lock on the treasury and
calls of different signers run side by side. Escrows from before the signer pool name the
treasury itself: it signs and pays its own fee. Keys are decrypted only here, only to sign.
"""

from django.conf import settings
from stellar_sdk import TransactionBuilder

from payments.models import PlatformAccount, PlatformSigner, Wallet
from payments.wallets import MAX_FEE_PER_OPERATION, platform_account


def envelope_sign(*, envelope, signer: Wallet | PlatformAccount | PlatformSigner) -> str:
    """Sign a verified envelope as `signer`; returns the XDR to send to Trustless Work."""
    envelope.sign(signer.keypair())
    platform = platform_account()
    if signer.public_key == platform.public_key:
        return envelope.to_xdr()
    bumped = TransactionBuilder.build_fee_bump_transaction(
        platform.public_key, MAX_FEE_PER_OPERATION, envelope, settings.STELLAR_NETWORK_PASSPHRASE
    )
    bumped.sign(platform.keypair())
    return bumped.to_xdr()
