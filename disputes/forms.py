"""Forms of the dispute case on the order page: they parse input; the dispute services decide."""

from django import forms

from disputes.services import EVIDENCE_ACCEPT, EVIDENCE_MAX_BYTES, EVIDENCE_TYPES, MESSAGE_MAX_CHARS
from marketplace.forms import BootstrapFormMixin
from offerhub.errors import ServiceError
from offerhub.files import upload_refusal

EVIDENCE_HELP = f"A PDF or an image (PNG, JPEG, GIF, WebP), at most {EVIDENCE_MAX_BYTES // (1024 * 1024)} MB."


def evidence_upload_check(upload) -> None:
    """The service's own check, said at once next to the field (type, size, content)."""
    problem = upload_refusal(upload, types=EVIDENCE_TYPES, max_bytes=EVIDENCE_MAX_BYTES)
    if problem:
        raise forms.ValidationError(problem)


class CaseForm(BootstrapFormMixin, forms.Form):
    """A dispute form whose service refusals land on the field they name."""

    def full_clean(self):
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                self._mark_invalid(name)

    def refused(self, error: ServiceError) -> None:
        """The service's refusal on the field it names (or over the form)."""
        name = error.field if error.field in self.fields else None
        self.add_error(name, _sentence(error.message))
        if name is not None:
            self._mark_invalid(name)

    def _mark_invalid(self, name: str) -> None:
        """Red, and announced with its error by screen readers."""
        attrs = self.fields[name].widget.attrs
        if "is-invalid" not in attrs.get("class", "").split():
            attrs["class"] = (attrs.get("class", "") + " is-invalid").strip()
        attrs.update({"aria-invalid": "true", "aria-describedby": f"{self[name].auto_id}_error"})


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


class EvidenceForm(CaseForm):
    """A piece of evidence: a text, a link or a file (with an optional caption)."""

    text = forms.CharField(
        label="What do you want support to know?",
        required=False,
        max_length=MESSAGE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Or a caption for your file.",
    )
    link = forms.URLField(
        label="Link", required=False, max_length=2000, assume_scheme="https", help_text="Optional: a web address."
    )
    file = forms.FileField(
        label="File",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": EVIDENCE_ACCEPT}),
        help_text=f"Optional. {EVIDENCE_HELP}",
    )

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload:
            evidence_upload_check(upload)
        return upload or None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if data.get("file") and data.get("link"):
            self.add_error("link", "One piece of evidence is a file or a link, not both: add the link separately.")
        elif not (data.get("text") or data.get("link") or data.get("file")):
            raise forms.ValidationError("Write something, or add a link or a file.")
        return data


class MessageForm(CaseForm):
    body = forms.CharField(
        label="Your message",
        max_length=MESSAGE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Write a message."},
        help_text="The other side and support read it; they are told by e-mail.",
    )


class WithdrawForm(CaseForm):
    confirm = forms.BooleanField(
        label="I withdraw my dispute: the order goes on as before.",
        error_messages={"required": "Tick the box to confirm that you withdraw the dispute."},
    )
