"""DRF permission that applies the role policy a view names (see staging.roles)."""

from rest_framework.permissions import BasePermission

from staging.roles import POLICIES, allowed, roles_of


def policy_for(view, method: str) -> str:
    """The view's ``role_policy``: one name, or a name per HTTP method (HEAD, OPTIONS and
    methods the view does not offer fall back to GET's, so they answer 405 rather than 403)."""
    policy = view.role_policy
    if isinstance(policy, dict):
        return policy.get(method) or policy["GET"]
    return policy


class RolePolicy(BasePermission):
    """Allows a request when the user holds a role of the view's policy (or it is public)."""

    message = "Your role does not allow this call."

    def has_permission(self, request, view) -> bool:
        policy = policy_for(view, request.method)
        if allowed(request.user, policy):
            return True
        if request.user is not None and request.user.is_authenticated:
            yours = ", ".join(sorted(roles_of(request.user))) or "no role"
            may = ", ".join(sorted(POLICIES[policy]))
            self.message = (
                f"Your role ({yours}) does not allow this call; the roles that may: {may}."
            )
        return False
