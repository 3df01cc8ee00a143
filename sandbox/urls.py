from django.urls import path, re_path

from sandbox import airtm, trustless_work, views

app_name = "sandbox"

urlpatterns = [
    path("horizon/", views.horizon_root, name="horizon-root"),
    path("horizon/accounts/<str:account_id>", views.account_detail, name="horizon-account"),
    path("horizon/accounts/<str:account_id>/payments", views.account_payments, name="horizon-account-payments"),
    path("horizon/payments", views.payments, name="horizon-payments"),
    path("horizon/transactions", views.submit_transaction, name="horizon-transactions"),
    path("horizon/transactions/<str:tx_hash>", views.transaction_detail, name="horizon-transaction"),
    path("horizon/friendbot", views.friendbot, name="horizon-friendbot"),
    path("horizon/faucet", views.faucet, name="horizon-faucet"),
    path("trustless-work/", views.trustless_work_root, name="trustless-work-root"),
    re_path(
        r"^trustless-work/deployer/(?P<escrow_type>single-release|multi-release)$",
        trustless_work.deploy,
        name="tw-deploy",
    ),
    re_path(
        r"^trustless-work/escrow/(?P<escrow_type>single-release|multi-release)/(?P<action>fund-escrow|"
        r"change-milestone-status|approve-milestone|release-funds|release-milestone-funds|dispute-escrow|"
        r"dispute-milestone|resolve-dispute|resolve-milestone-dispute|withdraw-remaining-funds)$",
        trustless_work.escrow_call,
        name="tw-escrow-call",
    ),
    re_path(
        r"^trustless-work/escrow/(?P<escrow_type>single-release|multi-release)/update-escrow$",
        trustless_work.update_escrow,
        name="tw-update-escrow",
    ),
    path("trustless-work/helper/send-transaction", trustless_work.send_transaction, name="tw-send"),
    path(
        "trustless-work/helper/get-escrow-by-contract-ids",
        trustless_work.get_escrows_by_contract_ids,
        name="tw-get-escrows",
    ),
    path("trustless-work/indexer/update-from-txHash", trustless_work.indexer_update_from_tx_hash, name="tw-indexer"),
    path("trustless-work/helper/get-escrows-by-signer", trustless_work.get_escrows_by_signer, name="tw-by-signer"),
    path("trustless-work/helper/get-escrows-by-role", trustless_work.get_escrows_by_role, name="tw-by-role"),
    re_path(
        r"^trustless-work/escrow/(?P<escrow_type>single-release|multi-release)/get-multiple-escrow-balance$",
        trustless_work.get_multiple_escrow_balance,
        name="tw-balances",
    ),
    path("airtm/v2/", views.airtm_root, name="airtm-root"),
    path("airtm/v2/payins", airtm.payins, name="airtm-payins"),
    path("airtm/v2/payins/by-code/<str:code>", airtm.payin_by_code, name="airtm-payin-by-code"),
    path("airtm/v2/payins/<str:payin_id>", airtm.payin_detail, name="airtm-payin"),
    path("airtm/v2/payouts", airtm.payouts, name="airtm-payouts"),
    path("airtm/v2/payouts/by-code/<str:code>", airtm.payout_by_code, name="airtm-payout-by-code"),
    path("airtm/v2/payouts/<str:payout_id>", airtm.payout_detail, name="airtm-payout"),
    path("airtm/v2/payouts/<str:payout_id>/commit", airtm.payout_commit, name="airtm-payout-commit"),
    path("airtm/v2/payouts/<str:payout_id>/events", airtm.payout_events, name="airtm-payout-events"),
    path("airtm/v2/users/<str:email>", airtm.user_by_email, name="airtm-user"),
    path("airtm/v2/me", airtm.me, name="airtm-me"),
    path("airtm/v2/me/balance", airtm.me_balance, name="airtm-me-balance"),
    path("airtm/checkout/<str:payin_id>", airtm.checkout, name="airtm-checkout"),
    re_path(
        r"^airtm/checkout/(?P<payin_id>[^/]+)/(?P<outcome>pay|cancel|fail)$",
        airtm.checkout_action,
        name="airtm-checkout-action",
    ),
]
