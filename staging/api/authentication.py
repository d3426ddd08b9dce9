"""Bearer-token authentication. Tokens are stored hashed (django-rest-knox); clients send
``Authorization: Bearer <token>``. Every refusal says what to send instead."""

import binascii
from hmac import compare_digest

from django.db.models import OuterRef
from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import get_token_model
from knox.settings import CONSTANTS
from knox.signals import token_expired
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

from staging.roles import remember_roles
from staging.selectors_accounts import (
    LIMIT_NAMES,
    limit_rows_of,
    remember_limit_rows,
    remember_roles_and_limit_rows,
    roles_and_limit_rows,
    roles_and_limit_rows_readable,
)
from staging.token_cache import token_cache

CREATETOKEN = ".venv/bin/python manage.py createtoken NAME --role data-user"
SEND_BEARER = "send the header as 'Authorization: Bearer <token>'"


class ExpiredTokenError(exceptions.AuthenticationFailed):
    default_detail = f"This token has expired; ask for a new one (an operator runs {CREATETOKEN})."
    default_code = "token_expired"


class BearerTokenAuthentication(TokenAuthentication):
    """Knox tokens under the ``Bearer`` scheme (set by REST_KNOX["AUTH_HEADER_PREFIX"]).

    Knox also scans all of the user's other tokens on every request to delete expired ones: a
    second query on every status poll. Here only the presented token is checked, once its digest
    matched, in knox's public ``validate_user`` (an expired one is deleted and refused, as knox
    does); other expired tokens are refused whenever they are presented, so nothing is lost by
    not sweeping them on each call.

    Knox passes over a header of another scheme (so the client hears "credentials were not
    provided", although it sent some) and fails with a 500 on a token that is not UTF-8. No
    other authentication here reads the Authorization header, so any header that is not a
    well-formed bearer token is refused with what to send instead.

    The token, its user, the user's roles and account limits are read in one query, and
    remembered by the process for ``AUTH_CACHE_SECONDS`` (``staging.token_cache``), so a
    warm status poll spends its one query on the job."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts:
            return None
        scheme = parts[0].decode("latin-1")
        if len(parts) == 1:
            if scheme.lower() == "bearer":
                raise exceptions.AuthenticationFailed(f"The token is missing: {SEND_BEARER}.")
            raise exceptions.AuthenticationFailed(
                f"The Authorization header has no scheme before the token: {SEND_BEARER}."
            )
        if scheme.lower() != "bearer":
            raise exceptions.AuthenticationFailed(
                f"The Authorization scheme {scheme!r} is not one this service reads: {SEND_BEARER}."
            )
        if len(parts) > 2:
            raise exceptions.AuthenticationFailed(
                f"A token has no spaces; {SEND_BEARER} with the token as createtoken printed it."
            )
        token = parts[1]
        if not token.isascii():
            raise self._unknown()
        try:
            return self.authenticate_credentials(token)
        except ExpiredTokenError:
            raise
        except exceptions.AuthenticationFailed as exc:
            if exc.detail == "User inactive or deleted.":
                raise
            raise self._unknown() from exc

    def authenticate_credentials(self, token: bytes):
        token = token.decode("ascii")
        try:
            digest = hash_token(token)
        except (TypeError, binascii.Error) as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        remembered = token_cache.get(digest)
        if remembered is not None:
            return remembered
        # PostgreSQL reads the roles and limit rows with the token as arrays; other databases
        # (SQLite, the embedded default) have no array subqueries and read them just after.
        in_one_query = roles_and_limit_rows_readable()
        candidates = (
            get_token_model()
            .objects.filter(token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH])
            .select_related("user")
        )
        if in_one_query:
            candidates = candidates.annotate(**roles_and_limit_rows(OuterRef("user_id")))
        for auth_token in candidates:
            if compare_digest(digest, auth_token.digest):
                user, auth_token = self.validate_user(auth_token)
                if in_one_query:
                    remember_roles_and_limit_rows(user, auth_token)
                else:
                    remember_roles(user, user.groups.values_list("name", flat=True))
                    remember_limit_rows(
                        user, limit_rows_of(user).order_by().values("user_id", *LIMIT_NAMES)
                    )
                token_cache.put(digest, user, auth_token)
                return user, auth_token
        raise exceptions.AuthenticationFailed("Invalid token.")

    @staticmethod
    def _unknown() -> exceptions.AuthenticationFailed:
        return exceptions.AuthenticationFailed(
            "This is not a token this service knows (mistyped, revoked, or expired and since "
            f"removed); ask for a new one (an operator runs {CREATETOKEN})."
        )

    def validate_user(self, auth_token):
        """Knox's check of the presented token's user, after an expired token is deleted and
        refused (with the signal knox sends)."""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            raise ExpiredTokenError()
        return super().validate_user(auth_token)
