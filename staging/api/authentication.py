"""Bearer-token authentication. Tokens are stored hashed (django-rest-knox); clients send
``Authorization: Bearer <token>``."""

from knox.auth import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """Knox tokens under the ``Bearer`` scheme (set by REST_KNOX["AUTH_HEADER_PREFIX"])."""
