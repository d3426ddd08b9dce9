"""DRF permission that applies the role policy a view names (see staging.roles)."""

from rest_framework.permissions import BasePermission

from staging.roles import allowed


class RolePolicy(BasePermission):
    """Allows a request when the user holds a role of the view's ``role_policy``."""

    message = "Your role does not allow this call."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and allowed(user, view.role_policy))
