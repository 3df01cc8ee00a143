"""The review, reply and profile forms (the services make the same checks; these place the messages)."""

from django import forms
from django.conf import settings

from marketplace.forms import LISTING_IMAGE_ACCEPT, BootstrapFormMixin
from marketplace.listings import size_label
from marketplace.models import Review, User

RATING_CHOICES = [(n, f"{n} star{'s' if n > 1 else ''}") for n in range(5, 0, -1)]


class ReviewForm(BootstrapFormMixin, forms.Form):
    rating = forms.TypedChoiceField(
        label="Your rating", choices=RATING_CHOICES, coerce=int, widget=forms.RadioSelect, required=True
    )
    body = forms.CharField(
        label="Your review",
        max_length=Review.BODY_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "How was the work, the communication, the delivery?"}),
        help_text="Shown on the listing and on the seller's profile, with your name.",
    )


class ReplyForm(BootstrapFormMixin, forms.Form):
    reply = forms.CharField(
        label="Your reply",
        max_length=Review.REPLY_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown under the review. You can reply once.",
    )


class ProfileForm(BootstrapFormMixin, forms.Form):
    about = forms.CharField(
        label="About you",
        required=False,
        max_length=User._meta.get_field("about").max_length,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What you do and for whom: buyers read it on your seller profile.",
    )
    # A file, not an ImageField: nothing is decoded before its size is checked (clean_avatar); the
    # service decodes and checks the picture itself (marketplace.reviews._avatar_square).
    avatar = forms.FileField(
        label="Profile picture", required=False, widget=forms.FileInput(attrs={"accept": LISTING_IMAGE_ACCEPT})
    )
    avatar_remove = forms.BooleanField(label="Remove my picture", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields[
            "avatar"
        ].help_text = (
            f"JPEG, PNG or WebP, up to {size_label(settings.OFFERHUB_LISTING_IMAGE_MAX_BYTES)}; cropped to a square."
        )

    def clean_avatar(self):
        upload = self.cleaned_data["avatar"]
        max_bytes = settings.OFFERHUB_LISTING_IMAGE_MAX_BYTES
        if upload and upload.size > max_bytes:
            raise forms.ValidationError(f"“{upload.name}” is larger than {size_label(max_bytes)}.")
        return upload
