"""No role climbs above itself in the admin: an ``admin``-role user, logged in through the login
form, can neither act on accounts that hold more than it does nor hand out roles it lacks, on
any route (change, password, delete, bulk delete, group change, token add and change)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from knox.models import AuthToken

from staging.roles import Role
from tests.admin.conftest import staff
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"
User = get_user_model()


@pytest.fixture
def adam(db):
    return staff("adam", Role.ADMIN)


@pytest.fixture
def adam_browser(adam) -> Client:
    browser = Client()
    response = browser.post(
        "/admin/login/?next=/admin/", {"username": "adam", "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    return browser


@pytest.fixture
def root(db):
    user = UserFactory(username="root")
    user.is_superuser = user.is_staff = True
    user.set_password("the root password")
    user.save()
    return user


@pytest.fixture
def olivia(operator):
    """The data-admin staff member (conftest's operator), by the name the tests use."""
    return operator


def change_form(user, **overrides) -> dict:
    """What the change form posts back for ``user`` with ``overrides`` applied."""
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "is_staff": "on" if user.is_staff else "",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_the_admin_role_cannot_reset_a_superusers_password(adam_browser, root):
    page = adam_browser.get(f"/admin/auth/user/{root.pk}/password/")
    response = adam_browser.post(
        f"/admin/auth/user/{root.pk}/password/",
        {"password1": "a new password 123!", "password2": "a new password 123!"},
    )

    assert page.status_code == 403
    assert response.status_code == 403
    root.refresh_from_db()
    assert root.check_password("the root password")


def test_the_admin_role_cannot_reset_a_data_admins_password(adam_browser, olivia):
    response = adam_browser.post(
        f"/admin/auth/user/{olivia.pk}/password/",
        {"password1": "a new password 123!", "password2": "a new password 123!"},
    )

    assert response.status_code == 403
    olivia.refresh_from_db()
    assert olivia.check_password(PASSWORD)


@pytest.mark.parametrize("target", ["root", "olivia"])
def test_the_admin_role_cannot_edit_users_who_hold_more(adam_browser, request, target):
    user = request.getfixturevalue(target)

    response = adam_browser.post(
        f"/admin/auth/user/{user.pk}/change/", change_form(user, is_active="")
    )

    assert response.status_code == 403
    user.refresh_from_db()
    assert user.is_active


def test_the_admin_role_cannot_add_itself_to_data_admin(adam_browser, adam, olivia):
    data_admin = Group.objects.get(name=Role.DATA_ADMIN)
    form = change_form(adam)
    form["groups"] = form["groups"] + [str(data_admin.pk)]

    response = adam_browser.post(f"/admin/auth/user/{adam.pk}/change/", form)

    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in response.content.decode()
    assert not adam.groups.filter(name=Role.DATA_ADMIN).exists()


def test_the_admin_role_cannot_give_a_peer_a_role_it_lacks(adam_browser, db):
    peer = staff("alice", Role.ADMIN)
    form = change_form(peer)
    form["groups"] = [str(Group.objects.get_or_create(name=Role.DATA_USER)[0].pk)]

    adam_browser.post(f"/admin/auth/user/{peer.pk}/change/", form)

    assert list(peer.groups.values_list("name", flat=True)) == [Role.ADMIN]


def test_the_admin_role_manages_peers_who_hold_no_more(adam_browser, db):
    peer = staff("alice", Role.ADMIN)

    edited = adam_browser.post(
        f"/admin/auth/user/{peer.pk}/change/", change_form(peer, email="alice@example.org")
    )
    reset = adam_browser.post(
        f"/admin/auth/user/{peer.pk}/password/",
        {"password1": "a new password 123!", "password2": "a new password 123!"},
    )

    assert edited.status_code == 302 and reset.status_code == 302
    peer.refresh_from_db()
    assert peer.email == "alice@example.org"
    assert peer.check_password("a new password 123!")


def test_the_admin_role_may_give_only_the_roles_it_holds(db):
    both = staff("amy", Role.ADMIN, Role.DATA_USER)
    browser = Client()
    browser.post("/admin/login/", {"username": "amy", "password": PASSWORD})
    newcomer = UserFactory(username="newcomer")
    form = change_form(newcomer)
    form["groups"] = [str(Group.objects.get(name=Role.DATA_USER).pk)]

    response = browser.post(f"/admin/auth/user/{newcomer.pk}/change/", form)

    assert response.status_code == 302
    assert both.pk != newcomer.pk
    assert list(newcomer.groups.values_list("name", flat=True)) == [Role.DATA_USER]


@pytest.mark.parametrize("target", ["root", "olivia"])
def test_the_admin_role_cannot_delete_users_who_hold_more(adam_browser, request, target):
    user = request.getfixturevalue(target)

    response = adam_browser.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert User.objects.filter(pk=user.pk).exists()


def test_the_admin_role_cannot_bulk_delete_users_who_hold_more(adam_browser, root, olivia):
    plain = UserFactory(username="plain")

    response = adam_browser.post(
        "/admin/auth/user/",
        {
            "action": "delete_selected",
            "_selected_action": [str(root.pk), str(olivia.pk), str(plain.pk)],
            "post": "yes",
        },
    )

    assert response.status_code in (200, 403)
    assert User.objects.filter(pk__in=[root.pk, olivia.pk, plain.pk]).count() == 3


def test_the_admin_role_cannot_change_groups(adam_browser, db):
    group = Group.objects.get(name=Role.ADMIN)

    response = adam_browser.post(
        f"/admin/auth/group/{group.pk}/change/", {"name": "admin", "permissions": []}
    )

    assert response.status_code == 403
    assert group.permissions.exists()


@pytest.mark.parametrize("target", ["root", "olivia"])
def test_the_admin_role_cannot_mint_a_token_for_users_who_hold_more(adam_browser, request, target):
    user = request.getfixturevalue(target)

    response = adam_browser.post(
        "/admin/knox/authtoken/add/", {"username": user.username, "ttl_hours": "1"}
    )

    assert response.status_code == 200
    assert "holds a role or permission you do not hold" in response.content.decode()
    assert not AuthToken.objects.filter(user=user).exists()


def test_tokens_cannot_be_changed_to_act_as_someone_else(adam_browser, adam, root):
    token, _ = AuthToken.objects.create(user=adam, expiry=None)

    response = adam_browser.post(
        f"/admin/knox/authtoken/{token.pk}/change/", {"user": str(root.pk)}
    )

    assert response.status_code == 403
    token.refresh_from_db()
    assert token.user_id == adam.pk


def test_a_token_lifetime_that_would_overflow_is_a_form_error(adam_browser, adam):
    response = adam_browser.post(
        "/admin/knox/authtoken/add/", {"username": "adam", "ttl_hours": str(10**15)}
    )

    assert response.status_code == 200
    assert "Ensure this value is less than or equal to" in response.content.decode()
    assert not AuthToken.objects.exists()


def test_the_admin_role_sets_a_users_limits_and_they_apply_at_once(db):
    from rest_framework.test import APIClient

    from staging.models import AccountLimits
    from staging.services.accounts import token_create

    staff("amy", Role.ADMIN, Role.DATA_USER)
    browser = Client()
    browser.post("/admin/login/", {"username": "amy", "password": PASSWORD})
    token = token_create(username="busy", role=Role.DATA_USER)
    busy = User.objects.get(username="busy")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/jobs/").status_code == 200  # its limits are read and cached

    response = browser.post(
        "/admin/staging/accountlimits/add/",
        {"user": str(busy.pk), "request_rate": "2/minute", "max_active_jobs": "5"},
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    assert AccountLimits.objects.get(user=busy).max_active_jobs == 5
    assert [api.get("/api/v1/jobs/").status_code for _ in range(2)] == [200, 429]


def test_the_admin_role_cannot_set_limits_for_users_who_hold_more(adam_browser, root):
    from staging.models import AccountLimits

    response = adam_browser.post(
        "/admin/staging/accountlimits/add/", {"user": str(root.pk), "request_rate": "0/minute"}
    )

    assert response.status_code == 403
    assert not AccountLimits.objects.exists()


def test_a_user_added_by_the_admin_role_gets_no_power_smuggled_into_the_form(adam_browser, db):
    data_admin = Group.objects.get(name=Role.DATA_ADMIN)

    response = adam_browser.post(
        "/admin/auth/user/add/",
        {
            "username": "newcomer",
            "usable_password": "true",
            "password1": "a new password 123!",
            "password2": "a new password 123!",
            "is_superuser": "on",
            "is_staff": "on",
            "groups": [str(data_admin.pk)],
        },
    )

    assert response.status_code == 302
    newcomer = User.objects.get(username="newcomer")
    assert not newcomer.is_superuser and not newcomer.is_staff
    assert not newcomer.groups.exists()


def test_the_admin_role_sets_limits_only_for_roles_it_holds(adam_browser, db):
    from staging.models import AccountLimits

    data_admin = Group.objects.get(name=Role.DATA_ADMIN)
    own = Group.objects.get(name=Role.ADMIN)

    refused = adam_browser.post(
        "/admin/staging/accountlimits/add/", {"role": str(data_admin.pk), "request_rate": "0/s"}
    )
    allowed = adam_browser.post(
        "/admin/staging/accountlimits/add/", {"role": str(own.pk), "request_rate": "10/s"}
    )

    assert "Select a valid choice" in refused.content.decode()
    assert allowed.status_code == 302
    assert list(AccountLimits.objects.values_list("role__name", flat=True)) == [Role.ADMIN]
