"""manage.py createtoken: token lifetime from the command line or TOKEN_TTL_HOURS."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from knox.models import AuthToken

pytestmark = pytest.mark.django_db


def create(*args: str) -> AuthToken:
    out = StringIO()
    call_command("createtoken", "carol", "--role", "data-user", *args, stdout=out)
    assert len(out.getvalue().strip()) == 64
    return AuthToken.objects.latest("created")


def test_without_a_lifetime_the_token_follows_the_token_ttl_setting(settings):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(hours=5)}
    token = create()
    assert timedelta(hours=4) < token.expiry - timezone.now() <= timedelta(hours=5)


def test_an_explicit_lifetime_wins_and_zero_means_never(settings):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(hours=5)}
    assert create("--ttl-hours", "0").expiry is None
    token = create("--ttl-hours", "48")
    assert timedelta(hours=47) < token.expiry - timezone.now() <= timedelta(hours=48)
