"""Forms of the sign-in page, the Users screens and My account.

Passwords go through Django's validators (AUTH_PASSWORD_VALIDATORS); the group choice is one
of the seeded groups (console.permissions), which carry every permission a user gets.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm, UserCreationForm
from django.contrib.auth.models import Group

from console.permissions import ADMINISTRATORS, GROUP_PERMISSIONS, OPERATORS, VIEWERS

User = get_user_model()

GROUP_HELP = (
    "Administrators may do everything; Operators run the farm (nodes and builds) but do not "
    "manage credentials or users; Viewers only look."
)


def seeded_groups():
    """The groups a user can be put in, in the order of their power."""
    order = {ADMINISTRATORS: 0, OPERATORS: 1, VIEWERS: 2}
    groups = Group.objects.filter(name__in=list(GROUP_PERMISSIONS))
    return sorted(groups, key=lambda g: order.get(g.name, 99))


class GroupChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Group) -> str:
        return obj.name


class SignInForm(AuthenticationForm):
    """Jenkins' sign-in form. A failed sign-in never says which of the two fields was wrong."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Invalid username or password",
    }
    remember_me = forms.BooleanField(label="Keep me signed in", required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "Username"
        self.fields["password"].label = "Password"
        self.fields["username"].widget.attrs.update(autocomplete="username")


def split_full_name(full_name: str) -> tuple[str, str]:
    """Jenkins keeps one "Full name"; Django two fields. Split at the first space so that
    ``get_full_name()`` gives the same text back."""
    first, _, last = " ".join(full_name.split()).partition(" ")
    return first, last


class FullNameMixin(forms.Form):
    full_name = forms.CharField(label="Full name", max_length=301, required=False)

    def _set_full_name(self, user) -> None:
        user.first_name, user.last_name = split_full_name(self.cleaned_data.get("full_name", ""))

    def clean_full_name(self) -> str:
        first, last = split_full_name(self.cleaned_data["full_name"])
        if len(first) > 150 or len(last) > 150:
            raise forms.ValidationError("This name is too long.")
        return self.cleaned_data["full_name"]


class CreateUserForm(FullNameMixin, UserCreationForm):
    """Jenkins' "Create User": username, password twice, full name, e-mail, plus the group."""

    email = forms.EmailField(label="E-mail address", required=False)
    group = GroupChoiceField(
        queryset=Group.objects.none(),
        label="Group",
        empty_label=None,
        widget=forms.RadioSelect,
        help_text=GROUP_HELP,
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = Group.objects.filter(name__in=list(GROUP_PERMISSIONS))
        self.fields["group"].choices = [(g.pk, g.name) for g in seeded_groups()]
        self.fields["password1"].label = "Password"
        self.fields["password2"].label = "Confirm password"
        self.fields["password2"].help_text = "Enter the same password again, for verification."
        self.fields["username"].help_text = "Letters, digits and @/./+/-/_ only; used to sign in."
        # Field order as Jenkins shows it.
        self.order_fields(["username", "password1", "password2", "full_name", "email", "group"])

    def save(self, commit: bool = True):
        user = super().save(commit=False)
        self._set_full_name(user)
        user.email = self.cleaned_data.get("email", "")
        group = self.cleaned_data["group"]
        # The Django admin (/admin/) opens to staff only: administrators are staff.
        user.is_staff = group.name == ADMINISTRATORS
        if commit:
            user.save()
            user.groups.set([group])
        return user


class EditUserForm(FullNameMixin, forms.ModelForm):
    """Configure a user: name, e-mail, groups and whether the account is active."""

    groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=GROUP_HELP,
    )

    class Meta:
        model = User
        fields = ("email", "is_active")
        labels = {"email": "E-mail address", "is_active": "Active"}
        help_texts = {"is_active": "An inactive user cannot sign in. Prefer this to deleting."}

    def __init__(self, *args, acting_user=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.acting_user = acting_user
        self.fields["groups"].queryset = Group.objects.filter(name__in=list(GROUP_PERMISSIONS))
        self.fields["groups"].choices = [(g.pk, g.name) for g in seeded_groups()]
        self.fields["groups"].label_from_instance = lambda g: g.name
        if self.instance.pk:
            self.fields["full_name"].initial = self.instance.get_full_name()
            self.fields["groups"].initial = [g.pk for g in self.instance.groups.all()]
        self.order_fields(["full_name", "email", "groups", "is_active"])

    def clean(self) -> dict:
        cleaned = super().clean()
        # An administrator must not lock themselves out of the Users screens by accident.
        if self.acting_user is not None and self.instance.pk == self.acting_user.pk:
            if not cleaned.get("is_active", True):
                self.add_error("is_active", "You cannot deactivate your own account.")
            groups = cleaned.get("groups")
            if groups is not None and ADMINISTRATORS not in {g.name for g in groups}:
                if not self.instance.is_superuser:
                    self.add_error(
                        "groups", "You cannot remove yourself from the Administrators group."
                    )
        return cleaned

    def save(self, commit: bool = True):
        user = super().save(commit=False)
        self._set_full_name(user)
        groups = list(self.cleaned_data["groups"])
        user.is_staff = user.is_superuser or any(g.name == ADMINISTRATORS for g in groups)
        if commit:
            user.save()
            user.groups.set(groups)
        return user


class ResetPasswordForm(SetPasswordForm):
    """An administrator sets a new password for another user (validators apply)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].label = "New password"
        self.fields["new_password2"].label = "Confirm new password"
        self.fields["new_password2"].help_text = "Enter the same password again, for verification."
