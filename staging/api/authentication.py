"""Bearer-token authentication. Tokens are stored hashed (django-rest-knox); clients send
``Authorization: Bearer <token>``."""

from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.signals import token_expired


class BearerTokenAuthentication(TokenAuthentication):
    """Knox tokens under the ``Bearer`` scheme (set by REST_KNOX["AUTH_HEADER_PREFIX"]).

    Knox also scans all of the user's other tokens on every request to delete expired ones: a
    second query on every status poll. Here only the presented token is checked (an expired one
    is deleted and refused, as knox does); other expired tokens are refused whenever they are
    presented, so nothing is lost by not sweeping them on each call."""

    def _cleanup_token(self, auth_token) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            return True
        return False
