from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, UserChangeForm, UserCreationForm

from marketplace.listings import (
    MAX_IMAGES,
    MAX_MILESTONES,
    SORT_CHOICES,
    MilestoneSpec,
    listing_image_check,
    price_limits,
    size_label,
)
from marketplace.models import Category, Listing, ListingImage, User
from offerhub.errors import ServiceError
from offerhub.forms import MoneyFormField


class SignUpForm(UserCreationForm):
    class Meta:
        model = User
        fields = ("email", "display_name")
        help_texts = {"display_name": "Your name or shop name, shown to other members."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Optional on the model (users created through the API may have none); web members log in with it.
        self.fields["email"].required = True

    def _post_clean(self):
        super()._post_clean()
        # Django files password-strength errors under the confirmation field; show them
        # under the password they are about (a mismatch stays under the confirmation).
        if "password2" in self.errors and not self.has_error("password2", "password_mismatch"):
            self.errors["password1"] = self.errors.pop("password2")

    def clean_email(self):
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this e-mail address already exists. Try logging in.")
        return email


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "The e-mail address or the password is not right. Passwords are case-sensitive.",
    }


class AdminUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class BootstrapFormMixin:
    """Bootstrap's classes on every widget, and `is-invalid` on the ones whose field has errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput | forms.CheckboxSelectMultiple):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select"
            else:
                css = "form-control"
            widget.attrs["class"] = css

    def full_clean(self):
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs["class"] += " is-invalid"


LISTING_IMAGE_ACCEPT = "image/jpeg,image/png,image/webp"


class MultipleImageInput(forms.FileInput):
    allow_multiple_selected = True


class ListingImagesField(forms.FileField):
    """Several uploads at once, each decoded and checked (type and size) on its own."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", MultipleImageInput(attrs={"multiple": True, "accept": LISTING_IMAGE_ACCEPT}))
        super().__init__(**kwargs)

    def clean(self, data, initial=None):
        uploads = [upload for upload in (data if isinstance(data, list | tuple) else [data]) if upload]
        uploads = [super(ListingImagesField, self).clean(upload, initial) for upload in uploads]
        problems = []
        for upload in uploads:
            try:
                listing_image_check(upload)
            except ServiceError as error:
                problems.append(error.message)
        if problems:
            raise forms.ValidationError(problems)
        return uploads


class ListingForm(BootstrapFormMixin, forms.Form):
    title = forms.CharField(max_length=120, help_text="What you offer, in a few words.")
    category = forms.ModelChoiceField(queryset=Category.objects.all(), empty_label="Choose a category")
    description = forms.CharField(
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="What the buyer gets, what you need from them, what is not included.",
    )
    price = MoneyFormField(
        label="Price (USD)",
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal", "placeholder": "50.00"}),
    )
    delivery_days = forms.IntegerField(
        label="Delivery time (days)",
        min_value=1,
        max_value=365,
        help_text="Counted from the moment the buyer's payment is secured in escrow.",
    )
    delivery_terms = forms.CharField(
        label="Delivery terms",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional: how you deliver (files, a link, a call…), revisions included.",
    )
    images = ListingImagesField(required=False, label="Add images")
    remove_images = forms.ModelMultipleChoiceField(
        queryset=ListingImage.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Remove images",
    )

    def __init__(self, *args, listing: Listing | None = None, **kwargs):
        if listing is not None:
            kwargs.setdefault(
                "initial",
                {
                    "title": listing.title,
                    "category": listing.category,
                    "description": listing.description,
                    "price": listing.price,
                    "delivery_days": listing.delivery_days,
                    "delivery_terms": listing.delivery_terms,
                },
            )
        super().__init__(*args, **kwargs)
        self.listing = listing
        self.fields["images"].help_text = (
            f"JPEG, PNG or WebP, up to {size_label(settings.OFFERHUB_LISTING_IMAGE_MAX_BYTES)} each; "
            f"at most {MAX_IMAGES} per listing. "
            "The first one is the cover."
        )
        minimum, maximum = price_limits()
        self.fields["price"].help_text = f"In dollars, between ${minimum:,.2f} and ${maximum:,.2f}."
        if listing is None:
            del self.fields["remove_images"]
        else:
            self.fields["remove_images"].queryset = listing.images.all()

    def clean_price(self):
        price = self.cleaned_data["price"]
        minimum, maximum = price_limits()
        if not minimum <= price <= maximum:
            raise forms.ValidationError(f"The price must be between ${minimum:,.2f} and ${maximum:,.2f}.")
        return price

    def clean(self):
        cleaned = super().clean()
        kept = len(self.listing.images.all()) - len(cleaned.get("remove_images") or []) if self.listing else 0
        if kept + len(cleaned.get("images") or []) > MAX_IMAGES:
            self.add_error("images", f"A listing has at most {MAX_IMAGES} images; remove some first.")
        return cleaned


class MilestoneForm(BootstrapFormMixin, forms.Form):
    title = forms.CharField(label="Milestone", max_length=120, widget=forms.TextInput(attrs={"placeholder": "Draft"}))
    amount = MoneyFormField(
        label="Amount (USD)",
        widget=forms.NumberInput(
            attrs={"step": "0.01", "min": "0.01", "inputmode": "decimal", "data-milestone-amount": ""}
        ),
    )


class BaseMilestoneFormSet(forms.BaseFormSet):
    """Optional milestones; when there are any, their amounts must add up to the price exactly."""

    def __init__(self, *args, price: Decimal | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.price = price

    def milestones(self) -> list[MilestoneSpec]:
        """Every row the seller kept: the listing's own rows, changed or not, and the added rows they filled in.

        Rows that came with the listing are kept unless ticked for removal: an unchanged row is a milestone
        the seller wants to keep, not an empty one. Only a row added on the page and left blank is ignored.
        """
        return [
            MilestoneSpec(title=form.cleaned_data["title"], amount=form.cleaned_data["amount"])
            for index, form in enumerate(self.forms)
            if (index < self.initial_form_count() or form.has_changed())
            and not self._should_delete_form(form)
            and form.cleaned_data
        ]

    def clean(self):
        super().clean()
        if any(self.errors) or self.price is None:
            return
        milestones = self.milestones()
        total = sum((milestone.amount for milestone in milestones), Decimal(0))
        if milestones and total != self.price:
            raise forms.ValidationError(
                f"Milestones: the amounts add up to ${total:,.2f}; they must add up to the price, ${self.price:,.2f}. "
                "Change an amount, or remove the milestones to be paid in one release."
            )


MilestoneFormSet = forms.formset_factory(
    MilestoneForm,
    formset=BaseMilestoneFormSet,
    extra=0,
    can_delete=True,
    max_num=MAX_MILESTONES,
    absolute_max=MAX_MILESTONES,
    validate_max=True,
)


class BrowseForm(forms.Form):
    """The browse page's query string; a value that does not validate is simply not applied."""

    q = forms.CharField(label="Search", required=False, max_length=200)
    category = forms.ModelChoiceField(
        queryset=Category.objects.all(), to_field_name="slug", required=False, empty_label="All categories"
    )
    sort = forms.ChoiceField(choices=SORT_CHOICES, required=False)


class AirtmLinkForm(BootstrapFormMixin, forms.Form):
    email = forms.EmailField(
        label="Your Airtm e-mail",
        max_length=254,
        help_text="The e-mail address you sign in to Airtm with.",
    )
