"""Who may see and do what in the admin; API tokens made from it, shown once."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from knox.models import AuthToken
from rest_framework.test import APIClient

from staging.models import Store
from staging.roles import ADMIN_SITE_PERMISSIONS, Role
from staging.services.accounts import roles_grant_admin_permissions
from tests.factories import UserFactory

User = get_user_model()


def permissions_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_migrate_gives_the_role_groups_their_admin_permissions(db):
    assert permissions_of(Role.ADMIN) == ADMIN_SITE_PERMISSIONS[Role.ADMIN]
    assert permissions_of(Role.DATA_ADMIN) == ADMIN_SITE_PERMISSIONS[Role.DATA_ADMIN]
    assert roles_grant_admin_permissions() == 0  # nothing left to grant: it is idempotent


def test_the_admin_asks_anonymous_visitors_to_log_in(db, client):
    response = client.get("/admin/dashboard/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/dashboard/"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/auth/user/", 200),
        ("/admin/knox/authtoken/", 200),
        ("/admin/staging/store/", 200),
        ("/admin/staging/store/add/", 200),
        ("/admin/staging/job/", 403),
        ("/admin/dashboard/", 403),
    ],
)
def test_the_admin_role_manages_users_tokens_and_stores_not_jobs(admin_role_client, path, status):
    assert admin_role_client.get(path).status_code == status


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/staging/job/", 200),
        ("/admin/staging/item/", 200),
        ("/admin/dashboard/", 200),
        ("/admin/django_celery_results/taskresult/", 200),
        ("/admin/auth/user/", 403),
        ("/admin/knox/authtoken/", 403),
    ],
)
def test_the_data_admin_role_watches_jobs_not_accounts(operator_client, path, status):
    assert operator_client.get(path).status_code == status


def test_the_admin_role_can_add_a_store(admin_role_client, tmp_path):
    response = admin_role_client.post(
        "/admin/staging/store/add/",
        {
            "slug": "tape2",
            "description": "second tape library",
            "kind": "posix",
            "archive_root": str(tmp_path / "a"),
            "staging_root": str(tmp_path / "s"),
            "simulated_latency_ms": 0,
            # The tape library inline, left empty.
            "tape_library-TOTAL_FORMS": "0",
            "tape_library-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    assert Store.objects.get(slug="tape2").description == "second tape library"


def test_only_superusers_may_grant_superuser_status(admin_role_client):
    bob = UserFactory(username="bob")

    page = admin_role_client.get(f"/admin/auth/user/{bob.pk}/change/").content.decode()

    assert 'name="is_staff"' in page
    assert 'name="is_superuser"' not in page


def test_a_token_made_in_the_admin_is_shown_once_and_works(admin_role_client):
    # An admin mints tokens only for users who hold no role it lacks: this one holds data-user.
    User.objects.get(username="adam").groups.add(Group.objects.get(name=Role.DATA_USER))
    UserFactory(username="dts-client", roles=[Role.DATA_USER])

    response = admin_role_client.post(
        "/admin/knox/authtoken/add/", {"username": "dts-client", "ttl_hours": "24"}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "messages" not in response.cookies  # the token never rides in a cookie
    page = response.content.decode()
    token = re.search(r'<code class="token">([^<]+)</code>', page).group(1)
    assert "it is not stored and will not be shown again" in page
    stored = AuthToken.objects.get(user__username="dts-client")
    assert stored.expiry is not None
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/v1/files/").status_code == 200
    # The token list shows which token it is, never the token itself.
    listing = admin_role_client.get("/admin/knox/authtoken/").content.decode()
    assert stored.token_key in listing and token not in listing


def test_a_token_for_an_unknown_user_is_refused(admin_role_client):
    response = admin_role_client.post(
        "/admin/knox/authtoken/add/", {"username": "nobody", "ttl_hours": "0"}
    )

    assert "There is no user named &#x27;nobody&#x27;." in response.content.decode()
    assert not AuthToken.objects.exists()
