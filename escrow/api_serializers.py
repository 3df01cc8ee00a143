"""Output of GET /escrows/{contractId}: the escrow viewer's data (`escrow.api.escrow_view_as_api`)."""

from rest_framework import serializers

from escrow.models import Escrow
from offerhub.api.serializers import MoneyField, TimestampField


class EscrowPartyOutput(serializers.Serializer):
    address = serializers.CharField(help_text="Stellar address")
    name = serializers.CharField(allow_null=True, help_text="only for our escrows, to the order's side")
    relation = serializers.CharField(allow_null=True, help_text="buyer or seller, on our escrows")


class EscrowFeesOutput(serializers.Serializer):
    amount = MoneyField(allow_zero=True)
    trustlessWork = MoneyField(allow_zero=True)
    trustlessWorkPercent = serializers.CharField(help_text='e.g. "0.3"')
    platform = MoneyField(allow_zero=True)
    platformPercent = serializers.CharField()
    receiverGets = MoneyField(allow_zero=True)


class EscrowViewMilestoneOutput(serializers.Serializer):
    index = serializers.IntegerField()
    description = serializers.CharField(allow_blank=True)
    amount = MoneyField(allow_zero=True, allow_null=True, help_text="multi-release only")
    status = serializers.CharField()
    evidence = serializers.CharField(allow_blank=True)
    approved = serializers.BooleanField()
    flags = serializers.DictField(allow_null=True, help_text="multi-release only")
    receiver = EscrowPartyOutput(allow_null=True, help_text="multi-release only")


class EscrowTimelineEntryOutput(serializers.Serializer):
    action = serializers.CharField()
    description = serializers.CharField()
    milestoneIndex = serializers.IntegerField(allow_null=True)
    transactionHash = serializers.CharField(allow_null=True)
    confirmedAt = TimestampField(allow_null=True)


class EscrowViewOutput(serializers.Serializer):
    id = serializers.CharField(allow_null=True, help_text="esc_… when the contract is ours")
    orderId = serializers.CharField(allow_null=True)
    trustlessContractId = serializers.CharField()
    type = serializers.ChoiceField(choices=Escrow.Type.choices)
    status = serializers.ChoiceField(choices=Escrow.Status.choices, allow_null=True, help_text="our record's")
    chainStatus = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    engagementId = serializers.CharField(allow_blank=True)
    amount = MoneyField(allow_zero=True)
    balance = MoneyField(allow_zero=True)
    currency = serializers.ChoiceField(choices=[("USD", "USD")])
    fees = EscrowFeesOutput()
    flags = serializers.DictField(allow_null=True, help_text="single-release only")
    roles = serializers.DictField(child=EscrowPartyOutput(), help_text="by Trustless Work's role key")
    milestones = EscrowViewMilestoneOutput(many=True)
    timeline = EscrowTimelineEntryOutput(many=True, allow_null=True, help_text="null for contracts not ours")
