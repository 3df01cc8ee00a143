"""Input and output serializers of the orders, resolution and dispute-opening endpoints
(API.md §8, §9, §10).

Inputs are strict: unknown fields are refused, strings must be JSON strings (DRF's CharField
would turn `12` or `true` into text) with a bound, money is a two-decimal string. Outputs
describe exactly what `marketplace.orders_selectors`' `*_as_api` builders write, so that the
OpenAPI schema is the contract the responses keep.
"""

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from disputes.models import Dispute
from escrow.models import Escrow
from marketplace.models import Order, OrderMilestone
from offerhub.api.serializers import (
    SHORT_TEXT_MAX,
    CurrencyField,
    MetadataField,
    MoneyField,
    PublicIdField,
    StrictSerializer,
    StringField,
    TextField,
    TimestampField,
)

MAX_MILESTONES = 50
MILESTONE_REF_MAX = 100
EVIDENCE_MAX_ITEMS = 20


# --- Orders: creation -------------------------------------------------------------------------


class MilestoneInput(StrictSerializer):
    """`{milestone_ref, title, amount}`, or the SDK's `{ref, description, amount}` (API.md §8)."""

    milestone_ref = StringField(
        required=False, allow_blank=True, max_length=MILESTONE_REF_MAX, help_text="or `ref` (SDK shape)"
    )
    ref = StringField(required=False, allow_blank=True, max_length=MILESTONE_REF_MAX, help_text="= milestone_ref")
    title = StringField(required=False, allow_blank=True, max_length=255, help_text="or `description` (SDK shape)")
    description = StringField(required=False, allow_blank=True, max_length=255, help_text="= title")
    amount = MoneyField()

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")  # named by its index, not "body"
        return super().to_internal_value(data)

    def validate(self, attrs):
        ref = _one_of(attrs, "milestone_ref", "ref")
        if ref != ref.strip() or "/" in ref or any(ord(char) < 32 for char in ref):
            # The ref is a path segment of the milestone's own endpoints.
            raise serializers.ValidationError(
                {"milestone_ref": "must not contain '/', control characters or edge spaces"}
            )
        return {"ref": ref, "title": _one_of(attrs, "title", "description"), "amount": attrs["amount"]}


# The ref is a path segment: no '/', no control characters, no spaces at either end.
MILESTONE_REF_PATTERN = r"^[^/\s\x00-\x1f]([^/\x00-\x1f]*[^/\s\x00-\x1f])?$"


class MilestoneInputScheme(OpenApiSerializerExtension):
    """The two shapes a milestone is sent in, each complete (mixing them is accepted too)."""

    target_class = "marketplace.api_serializers.MilestoneInput"
    priority = 1  # before the StrictSerializer scheme

    def map_serializer(self, auto_schema, direction):
        amount = auto_schema._map_serializer_field(self.target.fields["amount"], direction)

        def shape(ref: str, title: str) -> dict:
            return {
                "type": "object",
                "properties": {
                    ref: {"type": "string", "maxLength": MILESTONE_REF_MAX, "pattern": MILESTONE_REF_PATTERN},
                    title: {"type": "string", "minLength": 1, "maxLength": 255},
                    "amount": amount,
                },
                "required": [ref, title, "amount"],
                "additionalProperties": False,
            }

        return {"oneOf": [shape("milestone_ref", "title"), shape("ref", "description")]}


def _one_of(attrs: dict, name: str, alias: str) -> str:
    """A field given under its name or its alias (the same value if both; empty is absent)."""
    values = {attrs[key] for key in (name, alias) if attrs.get(key)}
    if not values:
        raise serializers.ValidationError({name: "is required"})
    if len(values) > 1:
        raise serializers.ValidationError({name: f"{name} and {alias} differ"})
    return values.pop()


class OrderCreateInput(StrictSerializer):
    """POST /orders: snake_case, as the original."""

    buyer_id = PublicIdField(help_text="usr_…")
    seller_id = PublicIdField(help_text="usr_…; not the buyer")
    amount = MoneyField(help_text="within the order limits of GET /config")
    currency = CurrencyField()
    title = StringField(max_length=100)
    description = TextField(required=False, allow_null=True)
    client_order_ref = StringField(
        required=False, allow_null=True, allow_blank=True, max_length=255, help_text="natural dedupe key"
    )
    milestones = serializers.ListField(
        child=MilestoneInput(),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=MAX_MILESTONES,
        help_text="sum = amount",
    )
    metadata = MetadataField()


# --- Orders: list query -------------------------------------------------------------------------


# --- Orders: actions ------------------------------------------------------------------------------


class EmptyInput(StrictSerializer):
    """An action without parameters: an empty body or `{}`."""


class OrderReserveInput(StrictSerializer):
    """POST /orders/{id}/reserve (an empty body is fine)."""

    amount = MoneyField(required=False, allow_null=True, help_text="if given, must equal the order amount")


class OrderCancelInput(StrictSerializer):
    """POST /orders/{id}/cancel."""

    reason = TextField(required=False, max_length=SHORT_TEXT_MAX)


class OrderReleaseInput(StrictSerializer):
    """POST /orders/{id}/resolution/release."""

    reason = TextField(required=False)
    requestedBy = StringField(required=False, allow_blank=True, max_length=SHORT_TEXT_MAX, help_text="recorded")


class OrderRefundInput(StrictSerializer):
    """POST /orders/{id}/resolution/refund: the reason is required."""

    reason = TextField(allow_blank=False)


class DisputeOpenInput(StrictSerializer):
    """POST /orders/{id}/resolution/dispute."""

    openedBy = serializers.ChoiceField(choices=Dispute.OpenedBy.choices)
    reason = serializers.ChoiceField(choices=Dispute.Reason.choices)
    evidence = serializers.ListField(
        child=TextField(allow_blank=False),
        required=False,
        allow_null=True,
        max_length=EVIDENCE_MAX_ITEMS,
        help_text="URLs or short texts",
    )
    orderId = PublicIdField(required=False, help_text="if given, the order in the path")


# --- Outputs ------------------------------------------------------------------------------------------


class OrderEscrowOutput(serializers.Serializer):
    id = serializers.CharField(help_text="esc_…")
    orderId = serializers.CharField()
    type = serializers.ChoiceField(choices=Escrow.Type.choices)
    trustlessContractId = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=Escrow.Status.choices)
    amount = MoneyField()
    terms = serializers.DictField(allow_null=True, help_text="always null")
    fundedAt = TimestampField(allow_null=True)
    releasedAt = TimestampField(allow_null=True)
    refundedAt = TimestampField(allow_null=True)
    createdAt = TimestampField()
    updatedAt = TimestampField()


class MilestoneOutput(serializers.Serializer):
    id = serializers.CharField(help_text="opaque; address a milestone by its ref")
    orderId = serializers.CharField()
    milestoneRef = serializers.CharField()
    ref = serializers.CharField(help_text="= milestoneRef (SDK)")
    title = serializers.CharField()
    description = serializers.CharField(help_text="= title (SDK)")
    amount = MoneyField()
    status = serializers.ChoiceField(choices=OrderMilestone.Status.choices)
    completedAt = TimestampField(allow_null=True)
    releasedAt = TimestampField(allow_null=True)
    createdAt = TimestampField()
    updatedAt = TimestampField()


class DisputeOutput(serializers.Serializer):
    id = serializers.CharField(help_text="dsp_…")
    orderId = serializers.CharField()
    openedBy = serializers.ChoiceField(choices=Dispute.OpenedBy.choices)
    reason = serializers.ChoiceField(choices=Dispute.Reason.choices)
    evidence = serializers.ListField(child=serializers.CharField(), allow_null=True)
    status = serializers.ChoiceField(choices=Dispute.Status.choices)
    resolutionDecision = serializers.ChoiceField(choices=Dispute.Decision.choices, allow_null=True)
    decisionNote = serializers.CharField(allow_null=True)
    assignedTo = serializers.CharField(allow_null=True)
    releaseAmount = MoneyField(allow_null=True)
    refundAmount = MoneyField(allow_null=True)
    resolvedAt = TimestampField(allow_null=True)
    respondBy = TimestampField(allow_null=True, help_text="the other party answers by then")
    respondedAt = TimestampField(allow_null=True, help_text="the other party's first evidence or message")
    overdue = serializers.BooleanField(help_text="unsettled and the other party has not answered in time")
    withdrawnAt = TimestampField(allow_null=True, help_text="when the opener withdrew it (status WITHDRAWN)")
    createdAt = TimestampField()
    updatedAt = TimestampField()


class OrderOutput(serializers.Serializer):
    id = serializers.CharField(help_text="ord_…")
    clientOrderRef = serializers.CharField(allow_null=True)
    buyerId = serializers.CharField()
    sellerId = serializers.CharField()
    amount = MoneyField()
    currency = serializers.ChoiceField(choices=[("USD", "USD")])
    status = serializers.ChoiceField(choices=Order.Status.choices)
    title = serializers.CharField()
    description = serializers.CharField(allow_null=True)
    metadata = serializers.DictField(allow_null=True)
    escrow = OrderEscrowOutput(allow_null=True)
    milestones = MilestoneOutput(many=True)
    dispute = DisputeOutput(allow_null=True, help_text="without `order`")
    createdAt = TimestampField()
    updatedAt = TimestampField()


class DisputeWithOrderOutput(DisputeOutput):
    order = OrderOutput()
