"""Inputs of the dispute case endpoints (API.md §10); the Dispute output is
marketplace.api_serializers' DisputeWithOrderOutput, shared with the opening endpoint."""

from rest_framework import serializers

from disputes.models import Dispute
from offerhub.api.serializers import AliasedInput, MoneyField, StringField, TextField

AGENT_MAX = Dispute._meta.get_field("assigned_to").max_length


class DisputeAssignInput(AliasedInput):
    """POST /disputes/{id}/assign: who reviews the case (`agentId`, the docs' name, is accepted)."""

    assignedTo = StringField(min_length=1, max_length=AGENT_MAX, help_text="the support agent reviewing the case")

    class Meta:
        aliases = {"agentId": "assignedTo"}


class DisputeResolveInput(AliasedInput):
    """POST /disputes/{id}/resolve: the amounts only for a SPLIT, both, adding up to what the escrow holds."""

    decision = serializers.ChoiceField(choices=Dispute.Decision.choices)
    releaseAmount = MoneyField(
        allow_zero=True, required=False, allow_null=True, help_text="SPLIT: to the seller (before fees)"
    )
    refundAmount = MoneyField(
        allow_zero=True, required=False, allow_null=True, help_text="SPLIT: to the buyer (before fees)"
    )
    note = TextField(required=False, allow_null=True, help_text="the decision's explanation, kept on the case")

    class Meta:
        aliases = {"release_amount": "releaseAmount", "refund_amount": "refundAmount"}
