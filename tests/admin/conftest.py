"""Staff users and logged-in browsers (Django test clients) for the admin tests."""

import pytest
from django.test import Client

from staging.roles import Role
from tests.factories import UserFactory


def staff(username: str, *roles: str):
    user = UserFactory(username=username, roles=list(roles))
    user.is_staff = True
    user.set_password("correct horse battery staple")
    user.save()
    return user


@pytest.fixture
def operator(db):
    """A staff member with the data-admin role: sees every job and may steer it."""
    return staff("olivia", Role.DATA_ADMIN)


@pytest.fixture
def operator_client(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def admin_role_client(db) -> Client:
    """A staff member with the admin role: users, tokens and stores."""
    client = Client()
    client.force_login(staff("adam", Role.ADMIN))
    return client
