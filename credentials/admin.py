"""Django admin for credentials: read-only views without any secret, not even ciphertext.

Credentials are created and changed on the Manage Credentials pages, where the forms parse
keys and keystores and conceal secrets; the admin only lets an administrator look and delete.
"""

from django.contrib import admin

from credentials.models import Credential, CredentialUsage, Domain


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Domain)
class DomainAdmin(ReadOnlyAdmin):
    list_display = ("name", "store", "description", "updated_at")
    search_fields = ("name", "description")
    fields = ("store", "name", "description", "specifications", "created_at", "updated_at")
    readonly_fields = fields


class UsageInline(admin.TabularInline):
    model = CredentialUsage
    fields = ("consumer_type", "name", "url", "first_used_at", "last_used_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Credential)
class CredentialAdmin(ReadOnlyAdmin):
    list_display = ("credential_id", "kind", "scope", "domain", "description", "updated_at")
    list_filter = ("kind", "scope", "domain")
    list_select_related = ("domain",)
    search_fields = ("credential_id", "description")
    # Never ``encrypted_secrets``; the username only when it is not a secret (it is blank then).
    fields = (
        "store",
        "domain",
        "credential_id",
        "kind",
        "scope",
        "description",
        "username",
        "username_secret",
        "details",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    exclude = ("encrypted_secrets",)
    inlines = [UsageInline]


@admin.register(CredentialUsage)
class CredentialUsageAdmin(ReadOnlyAdmin):
    list_display = ("credential", "consumer_type", "name", "last_used_at")
    list_select_related = ("credential",)
    fields = (
        "credential",
        "consumer_type",
        "consumer_id",
        "name",
        "url",
        "first_used_at",
        "last_used_at",
    )
    readonly_fields = fields
