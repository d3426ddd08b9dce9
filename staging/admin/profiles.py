"""User profiles: the ORCID each user is known by to the KBase DTS. Managed by whoever manages
users; the database refuses one ORCID on two users, and the form says so."""

from django.contrib import admin

from staging.models import UserProfile


@admin.register(UserProfile)
class UserProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "orcid"]
    list_select_related = ["user"]
    search_fields = ["user__username", "=orcid"]
    autocomplete_fields = ["user"]
    fields = ["user", "orcid"]

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("auth.view_user")

    def has_add_permission(self, request):
        return request.user.has_perm("auth.change_user")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("auth.change_user")

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("auth.change_user")

    def has_module_permission(self, request):
        return request.user.has_perm("auth.view_user")
