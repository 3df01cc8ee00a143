from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserChangeForm, UserCreationForm

from marketplace.models import User


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
