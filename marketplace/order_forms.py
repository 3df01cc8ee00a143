"""Forms of the checkout and order pages: they parse input; the order services decide."""

import re
import secrets

from django import forms

from disputes.forms import evidence_upload_check
from marketplace.forms import BootstrapFormMixin
from marketplace.models import DisputeReason
from offerhub.files import upload_refusal

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

EVIDENCE_MAX_BYTES = 10 * 1024 * 1024
# Extension → what the file must start with (None: UTF-8 text without NUL bytes).
EVIDENCE_TYPES: dict[str, tuple[bytes, ...] | None] = {
    "pdf": (b"%PDF-",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "txt": None,
}
EVIDENCE_ACCEPT = ",".join(f".{extension}" for extension in EVIDENCE_TYPES)


def checkout_token_new() -> str:
    """A fresh token for one rendering of the checkout form: the same token submitted twice is one order."""
    return secrets.token_urlsafe(24)


class CheckoutForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)
    # The price the buyer saw: if the seller changed it meanwhile, the buyer confirms again.
    price_cents = forms.IntegerField(widget=forms.HiddenInput, min_value=1)

    def clean_token(self):
        token = self.cleaned_data["token"]
        if not TOKEN_PATTERN.match(token):
            raise forms.ValidationError("This checkout form is not valid any more. Please confirm again.")
        return token


def evidence_file_check(upload) -> None:
    """Refuse files over the size limit, of other types, or whose content is not what their name says."""
    problem = upload_refusal(upload, types=EVIDENCE_TYPES, max_bytes=EVIDENCE_MAX_BYTES)
    if problem:
        raise forms.ValidationError(problem)


class DeliverForm(BootstrapFormMixin, forms.Form):
    """The seller marks the order (or one milestone) delivered, with something to show for it."""

    milestone = forms.CharField(widget=forms.HiddenInput, required=False, max_length=100)
    evidence_text = forms.CharField(
        label="What did you deliver?",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The buyer reads this before approving the payment.",
    )
    evidence_link = forms.URLField(
        label="Link to the work", required=False, max_length=200, assume_scheme="https", help_text="Optional."
    )
    evidence_file = forms.FileField(
        label="File of the work",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": EVIDENCE_ACCEPT}),
        help_text=f"Optional: PDF, image, ZIP or text, at most {EVIDENCE_MAX_BYTES // (1024 * 1024)} MB.",
    )

    def clean_evidence_file(self):
        upload = self.cleaned_data.get("evidence_file")
        if upload:
            evidence_file_check(upload)
        return upload or None

    def clean(self):
        data = super().clean()
        if not self.errors and not (
            data.get("evidence_text") or data.get("evidence_link") or data.get("evidence_file")
        ):
            raise forms.ValidationError("Describe what you delivered, or add a link or a file, for the buyer to check.")
        return data


class MilestoneForm(forms.Form):
    milestone = forms.CharField(required=False, max_length=100)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)

    def __init__(self, *args, required: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = required
        self.fields["reason"].error_messages["required"] = "Please say why."


class DisputeForm(forms.Form):
    reason = forms.ChoiceField(
        choices=DisputeReason.choices,
        error_messages={
            "required": "Please say what went wrong.",
            "invalid_choice": "Please say what went wrong: choose one of the reasons in the list.",
        },
    )
    details = forms.CharField(max_length=500, required=False)
    # Optional: a first piece of evidence (a PDF or an image), added to the case right after it opens.
    file = forms.FileField(required=False)

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload:
            evidence_upload_check(upload)
        return upload or None
