"""Inputs and outputs of the dispute case endpoints (API.md §10 and the [X] case file: evidence,
the thread, withdrawal, reassignment); the Dispute output is marketplace.api_serializers'
DisputeWithOrderOutput, shared with the opening endpoint."""

import base64
import binascii

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from disputes.models import Dispute, DisputeEvidence, DisputeMessage, Party
from disputes.services import MESSAGE_MAX_CHARS
from marketplace.api_serializers import MAX_MILESTONES, MILESTONE_REF_MAX
from offerhub.api.serializers import (
    AliasedInput,
    MoneyField,
    StrictSerializer,
    StringField,
    TextField,
    TimestampField,
)

AGENT_MAX = Dispute._meta.get_field("assigned_to").max_length
AUTHOR_NAME_MAX = DisputeMessage._meta.get_field("author_name").max_length
FILE_NAME_MAX = DisputeEvidence._meta.get_field("file_name").max_length
LINK_MAX = DisputeEvidence._meta.get_field("link").max_length


class DisputeAssignInput(AliasedInput):
    """POST /disputes/{id}/assign and /reassign: who reviews the case (`agentId`, the docs' name, is accepted)."""

    assignedTo = StringField(min_length=1, max_length=AGENT_MAX, help_text="the support agent reviewing the case")

    class Meta:
        aliases = {"agentId": "assignedTo"}


class MilestoneShareInput(StrictSerializer):
    """What of one open milestone goes to the seller in a SPLIT; the rest goes to the buyer."""

    milestoneRef = StringField(min_length=1, max_length=MILESTONE_REF_MAX)
    releaseAmount = MoneyField(allow_zero=True, help_text="to the seller (before fees)")

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")  # named by its index, not "body"
        return super().to_internal_value(data)


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
    milestones = MilestoneShareInput(
        many=True,
        required=False,
        allow_null=True,
        max_length=MAX_MILESTONES,
        help_text="SPLIT of a multi-release escrow: every open milestone, what of it goes to the seller",
    )

    class Meta:
        aliases = {"release_amount": "releaseAmount", "refund_amount": "refundAmount"}

    def validate_milestones(self, shares):
        if shares is None:
            return None
        refs = [share["milestoneRef"] for share in shares]
        if len(set(refs)) != len(refs):
            raise serializers.ValidationError("each milestone once")
        if not refs:
            raise serializers.ValidationError("name every open milestone, or leave milestones out")
        return shares


class DisputeWithdrawInput(StrictSerializer):
    """POST /disputes/{id}/withdraw: the party who opened the case takes it back."""

    withdrawnBy = serializers.ChoiceField(choices=Dispute.OpenedBy.choices)


@extend_schema_field({"type": "string", "format": "byte", "description": "standard base64 (RFC 4648), padded"})
class Base64Field(serializers.Field):
    """Bytes sent as standard base64 (RFC 4648, padded) in a JSON string."""

    default_error_messages = {
        "not_a_string": "must be a string",
        "base64": "must be base64 (RFC 4648, with padding)",
        "empty": "must not be empty",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        try:
            content = base64.b64decode(data.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            self.fail("base64")
        if not content:
            self.fail("empty")
        return content

    def to_representation(self, value):
        return base64.b64encode(value).decode("ascii")


class EvidenceFileInput(StrictSerializer):
    """A file in the JSON body: its name (the extension says its type) and its bytes in base64."""

    name = StringField(
        min_length=1, max_length=FILE_NAME_MAX, help_text="e.g. receipt.pdf: pdf, png, jpg, jpeg, gif or webp"
    )
    contentBase64 = Base64Field(help_text="the file's bytes, base64 (the body is bounded, see docs)")

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object {name, contentBase64}")
        return super().to_internal_value(data)

    def validate_name(self, name: str) -> str:
        """A file's own name, never a path: what is stored and sent back is derived from it."""
        if "/" in name or "\\" in name or name.strip(". ") == "":
            raise serializers.ValidationError("a file name such as receipt.pdf, without any folder")
        return name


class DisputeEvidenceInput(StrictSerializer):
    """POST /disputes/{id}/evidence: a text, a link, or a file with an optional caption (`text`)."""

    submittedBy = serializers.ChoiceField(choices=Party.choices, help_text="SUPPORT needs the support scope")
    text = TextField(required=False, allow_null=True, max_length=MESSAGE_MAX_CHARS, help_text="or a file's caption")
    link = StringField(required=False, allow_null=True, allow_blank=True, max_length=LINK_MAX, help_text="https://…")
    file = EvidenceFileInput(required=False, allow_null=True)


class DisputeMessageInput(StrictSerializer):
    """POST /disputes/{id}/messages."""

    postedBy = serializers.ChoiceField(choices=Party.choices, help_text="SUPPORT needs the support scope")
    body = TextField(allow_blank=False, max_length=MESSAGE_MAX_CHARS)
    internal = serializers.BooleanField(
        required=False, default=False, help_text="support's note the parties never see (support scope)"
    )
    authorName = StringField(required=False, allow_blank=True, max_length=AUTHOR_NAME_MAX, help_text="as shown")

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(data.get("internal", False), bool):  # DRF would read "yes" or 1 as true
            raise serializers.ValidationError({"internal": ["must be true or false"]})
        return value


# --- Outputs ---------------------------------------------------------------------------------


class EvidenceFileOutput(serializers.Serializer):
    name = serializers.CharField(help_text="as uploaded")
    size = serializers.IntegerField(help_text="bytes")
    url = serializers.CharField(help_text="GET it with the key: /api/v1/disputes/{id}/evidence/{evidenceId}/file")


class DisputeEvidenceOutput(serializers.Serializer):
    id = serializers.CharField(help_text="evd_…")
    disputeId = serializers.CharField()
    submittedBy = serializers.ChoiceField(choices=Party.choices)
    kind = serializers.ChoiceField(choices=DisputeEvidence.Kind.choices)
    text = serializers.CharField(allow_null=True, help_text="what the party says, or the file's caption")
    link = serializers.CharField(allow_null=True)
    file = EvidenceFileOutput(allow_null=True)
    createdAt = TimestampField()


class DisputeMessageOutput(serializers.Serializer):
    id = serializers.CharField(help_text="msg_…")
    disputeId = serializers.CharField()
    postedBy = serializers.ChoiceField(choices=Party.choices)
    authorName = serializers.CharField()
    body = serializers.CharField()
    internal = serializers.BooleanField(help_text="only keys with the support scope see internal notes")
    createdAt = TimestampField()
