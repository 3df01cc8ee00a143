"""Signing Trustless Work transactions for the role that must sign, with our fee approach.

The role's key signs the verified transaction; the platform wraps it in a fee bump and
pays the fee, so a user's wallet (0 XLM) can approve, fund or dispute like any account.
The platform's own roles (release signer, dispute resolver, platform address) sign with
the platform key and pay their own fee. Keys are decrypted only here, only to sign.
"""

from django.conf import settings
from stellar_sdk import TransactionBuilder

from payments.models import PlatformAccount, Wallet
from payments.wallets import MAX_FEE_PER_OPERATION, platform_account


def envelope_sign(*, envelope, signer: Wallet | PlatformAccount) -> str:
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
