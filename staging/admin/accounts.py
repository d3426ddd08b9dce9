"""Users and API tokens, managed by the ``admin`` role. A token is shown once, when it is made:
only its hash is stored."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from knox.models import AuthToken

from staging.errors import ServiceError
from staging.models import AccountLimits
from staging.selectors_accounts import (
    account_grantable_groups,
    account_holds_at_most,
    account_limits_changed,
)
from staging.services.accounts import token_issue

User = get_user_model()

# Ten years: longer than any token should live, and far below where the expiry date would pass
# the calendar's end (an overflow, not a form error).
TOKEN_TTL_MAX_HOURS = 10 * 366 * 24

REFUSED_HOLDS_MORE = (
    "{username} holds a role or permission you do not hold; only a superuser (or someone "
    "who holds at least as much) may act as or on this account."
)


class TokenCreateForm(forms.Form):
    username = forms.CharField(
        label="User", max_length=150, help_text="The user the token acts as (must exist)."
    )
    ttl_hours = forms.IntegerField(
        label="Expires after (hours)",
        min_value=0,
        max_value=TOKEN_TTL_MAX_HOURS,
        help_text=f"0: never, until the token is revoked (deleted here); at most "
        f"{TOKEN_TTL_MAX_HOURS} (ten years).",
    )

    def __init__(self, *args, actor, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor = actor

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = User.objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"There is no user named {username!r}.")
        if not account_holds_at_most(actor=self.actor, target=user):
            raise forms.ValidationError(REFUSED_HOLDS_MORE.format(username=username))
        self.cleaned_data["user"] = user
        return username


if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class TokenAdmin(admin.ModelAdmin):
    list_display = ["token_key", "user", "created", "expiry", "state"]
    list_select_related = ["user"]
    search_fields = ["=token_key", "user__username"]
    search_help_text = "The first characters of a token, or a user name."
    ordering = ["-created"]
    fields = ["token_key", "user", "created", "expiry"]

    @admin.display(description="state")
    def state(self, token):
        if token.expiry and token.expiry <= timezone.now():
            return format_html('<span class="badge status-failed">{}</span>', "expired")
        return format_html('<span class="badge status-finished">{}</span>', "valid")

    def has_change_permission(self, request, obj=None):
        # Tokens are made and revoked, never edited.
        return False

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = (
            {"ttl_hours": settings.REST_KNOX["TOKEN_TTL"] // timedelta(hours=1)}
            if (settings.REST_KNOX["TOKEN_TTL"])
            else {"ttl_hours": 0}
        )
        form = TokenCreateForm(request.POST or None, initial=initial, actor=request.user)
        created = None
        if request.method == "POST" and form.is_valid():
            hours = form.cleaned_data["ttl_hours"]
            try:
                created, token = token_issue(
                    user=form.cleaned_data["user"], ttl=timedelta(hours=hours) if hours else None
                )
            except ServiceError as exc:
                form.add_error("username", exc.detail)
            else:
                self.log_addition(request, created, "Token created from the admin.")
                self.message_user(
                    request,
                    format_html(
                        'New token for {}: <code class="token">{}</code> Copy it now: it is '
                        "not stored and will not be shown again.",
                        created.user.get_username(),
                        token,
                    ),
                    messages.SUCCESS,
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Create an API token",
            "opts": self.opts,
            "form": form,
            "created": created,
            "has_view_permission": self.has_view_permission(request),
        }
        # Rendered, not redirected: the token travels once, in this response, and is never
        # put in a cookie or the session as a redirect's message would be.
        response = TemplateResponse(request, "admin/knox/authtoken/create.html", context)
        response["Cache-Control"] = "no-store"
        return response


class StagingUserAdmin(UserAdmin):
    """Django's user admin, except that a non-superuser never acts above itself: it grants
    neither superuser status nor single permissions, gives only the roles (groups) it holds, and
    changes, resets the password of, or deletes only users who hold no more than it does
    (``account_holds_at_most``). Django's password view and bulk delete ask the same
    permission methods, so every route follows the one rule."""

    list_display = ["username", "email", "is_staff", "is_active", "last_login"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += ["is_superuser", "user_permissions"]
        return readonly

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or account_holds_at_most(actor=request.user, target=obj))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or account_holds_at_most(actor=request.user, target=obj))

    def get_deleted_objects(self, objs, request):
        # The bulk "delete selected" action checks only the model permission; refuse the whole
        # batch when it holds one user above the actor (Django then shows what is missing).
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        above = [u.get_username() for u in objs if not self.has_delete_permission(request, u)]
        if above:
            perms_needed = set(perms_needed) | {
                f"user {name} (holds more than you)" for name in above
            }
        return deleted, counts, perms_needed, protected

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups":
            kwargs["queryset"] = account_grantable_groups(actor=request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(AccountLimits)
class AccountLimitsAdmin(admin.ModelAdmin):
    """Rates and limits of work in flight, for a role or one user; blank fields inherit (see
    ``staging.models_limits``). A non-superuser sets them only for users who hold no more than
    it does and for roles it holds (a rate of 0/minute would lock anyone out)."""

    list_display = [
        "__str__",
        "request_rate",
        "submit_rate",
        "max_active_jobs",
        "max_active_files",
        "max_active_bytes",
        "max_concurrent_scans",
        "max_active_subjobs",
        "dispatch_weight",
    ]
    list_select_related = ["user", "role"]
    autocomplete_fields = ["user"]
    search_fields = ["user__username", "role__name"]
    fieldsets = [
        ("For", {"fields": ["role", "user"]}),
        ("Request rates", {"fields": ["request_rate", "submit_rate"]}),
        (
            "Work in flight",
            {
                "fields": [
                    "max_active_jobs",
                    "max_active_files",
                    "max_active_bytes",
                    "max_concurrent_scans",
                    "max_active_subjobs",
                    "dispatch_weight",
                ]
            },
        ),
    ]

    def _may_act_on(self, request, obj) -> bool:
        if obj is None:
            return True
        if obj.user_id is not None:
            return account_holds_at_most(actor=request.user, target=obj.user)
        return account_grantable_groups(actor=request.user).filter(pk=obj.role_id).exists()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "role":
            kwargs["queryset"] = account_grantable_groups(actor=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._may_act_on(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._may_act_on(request, obj)

    def save_model(self, request, obj, form, change):
        if not self._may_act_on(request, obj):
            raise PermissionDenied
        super().save_model(request, obj, form, change)
        account_limits_changed()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        account_limits_changed()

    def delete_queryset(self, request, queryset):
        if not all(self._may_act_on(request, row) for row in queryset):
            raise PermissionDenied
        super().delete_queryset(request, queryset)
        account_limits_changed()


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, StagingUserAdmin)
