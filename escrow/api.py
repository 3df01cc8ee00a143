"""REST read of any escrow contract: `GET /api/v1/escrows/{contractId}` (scope `read`).

The escrow viewer's data as JSON (see `escrow.selectors`): the contract as the chain has
it, enriched with our record when the escrow was created through this OfferHub.
"""

from drf_spectacular.utils import extend_schema

from escrow.api_serializers import EscrowViewOutput
from escrow.selectors import EscrowServiceUnavailable, EscrowView, Party, escrow_public_view, percent_text
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_response
from offerhub.errors import ServiceError
from offerhub.timefmt import iso_timestamp


def _party(party: Party) -> dict:
    return {"address": party.address, "name": party.name, "relation": party.relation or None}


def escrow_view_as_api(view: EscrowView) -> dict:
    escrow = view.escrow
    fees = view.fees
    return {
        "id": escrow.public_id if escrow else None,
        "orderId": escrow.engagement_id if escrow else None,
        "trustlessContractId": view.contract_id,
        "type": view.type,
        "status": escrow.status if escrow else None,
        "chainStatus": view.chain_status,
        "title": view.title,
        "description": view.description,
        "engagementId": view.engagement_id,
        "amount": view.amount.money,
        "balance": view.balance.money,
        "currency": "USD",
        "fees": {
            "amount": fees.amount.money,
            "trustlessWork": fees.trustless_work.money,
            "trustlessWorkPercent": percent_text(fees.trustless_work_percent),
            "platform": fees.platform.money,
            "platformPercent": percent_text(fees.platform_percent),
            "receiverGets": fees.net.money,
        },
        "flags": view.flags,
        "roles": {party.role: _party(party) for party in view.parties},
        "milestones": [
            {
                "index": m.index,
                "description": m.description,
                "amount": m.amount.money if m.amount else None,
                "status": m.status,
                "evidence": m.evidence,
                "approved": m.approved,
                "flags": m.flags,
                "receiver": _party(m.receiver) if m.receiver else None,
            }
            for m in view.milestones
        ],
        "timeline": None
        if view.timeline is None
        else [
            {
                "action": entry.action,
                "description": entry.text,
                "milestoneIndex": entry.milestone_index,
                "transactionHash": entry.tx_hash or None,
                "confirmedAt": iso_timestamp(entry.when),
            }
            for entry in view.timeline
        ],
    }


class EscrowDetailView(ApiView):
    required_scope = "read"

    @extend_schema(
        summary="Any escrow contract as the chain has it, with our record's details when it is ours",
        tags=["escrows"],
        responses=EscrowViewOutput,
    )
    def get(self, request, contract_id):
        try:
            view = escrow_public_view(contract_id=contract_id, marketplace_id=request.auth.marketplace_id)
        except EscrowServiceUnavailable as error:
            raise ServiceError(
                error.code,
                "The escrow service (Trustless Work) is unreachable; try again in a minute",
                details={"provider": "trustless-work"},
            ) from None
        if view is None:
            raise ServiceError(
                "ESCROW_NOT_FOUND",
                f"Escrow contract {contract_id[:100]} not found",
                details={"contractId": contract_id[:100]},
            )
        return api_response(escrow_view_as_api(view))
