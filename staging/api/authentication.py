"""Bearer-token authentication. Tokens are stored hashed (django-rest-knox); clients send
``Authorization: Bearer <token>``."""

from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.signals import token_expired


class BearerTokenAuthentication(TokenAuthentication):
    """Knox tokens under the ``Bearer`` scheme (set by REST_KNOX["AUTH_HEADER_PREFIX"])."""

    def _cleanup_token(self, auth_token) -> bool:
        """True if the presented token has expired (it is deleted then).

        Knox's own version also reads every other token of the same user on each request, to
        delete the expired ones: a query per poll that decides nothing (tokens never expire
        unless TOKEN_TTL_HOURS is set) and grows with the tokens a user holds. Only the presented
        token's expiry matters here; an expired token is deleted when it is next presented.
        (Overrides a private hook of knox 5.1, which requirements.txt pins.)"""
        if auth_token.expiry is None or auth_token.expiry >= timezone.now():
            return False
        username = auth_token.user.get_username()
        auth_token.delete()
        token_expired.send(sender=type(self), username=username, source="auth_token")
        return True
