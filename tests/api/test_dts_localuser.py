"""GET /dts/localuser/{orcid} and the ways a user gets an ORCID (createtoken, setorcid)."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from staging.models import UserProfile
from staging.orcid import orcid_check_character, orcid_problem
from staging.roles import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CARBERRY = "0000-0002-1825-0097"


def command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_a_valid_orcid_maps_to_the_user_createtoken_gave_it(client_for):
    command("createtoken", "psyclay", "--role", "data-user", "--orcid", CARBERRY)

    response = client_for(Role.SERVICE_USER, username="dts").get(f"/dts/localuser/{CARBERRY}")

    assert response.status_code == 200
    assert response.json() == {"orcid": CARBERRY, "username": "psyclay"}


def test_an_orcid_with_a_wrong_check_digit_is_400(client_for):
    response = client_for().get("/dts/localuser/0000-0002-1825-0098")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["field"] == "orcid"
    assert "check character is 8" in response.json()["detail"]
    assert "call for 7" in response.json()["detail"]


@pytest.mark.parametrize(
    "orcid",
    ["0000000218250097", "0000-0002-1825-009", "0000-0002-1825-009x", "abcd-0002-1825-0097"],
)
def test_a_malformed_orcid_is_400_with_an_example(client_for, orcid):
    response = client_for().get(f"/dts/localuser/{orcid}")
    assert response.status_code == 400
    assert CARBERRY in response.json()["detail"]


def test_an_orcid_no_user_has_is_404(client_for):
    response = client_for().get(f"/dts/localuser/{CARBERRY}")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_an_x_check_character_is_valid():
    # 0000-0002-1694-233X is ORCID's documented example of a check character of 10.
    assert orcid_check_character("000000021694233") == "X"
    assert orcid_problem("0000-0002-1694-233X") is None


def test_a_second_user_is_refused_an_orcid_the_first_holds_naming_the_first():
    command("createtoken", "psyclay", "--role", "data-user", "--orcid", CARBERRY)

    with pytest.raises(CommandError, match="already belongs to user psyclay"):
        command("createtoken", "impostor", "--role", "data-user", "--orcid", CARBERRY)
    UserFactory(username="other")
    with pytest.raises(CommandError, match="already belongs to user psyclay"):
        command("setorcid", "other", CARBERRY)

    assert list(UserProfile.objects.values_list("user__username", "orcid")) == [
        ("psyclay", CARBERRY)
    ]


def test_the_database_itself_holds_one_orcid_to_one_user():
    first, second = UserFactory(), UserFactory()
    UserProfile.objects.create(user=first, orcid=CARBERRY)
    with pytest.raises(IntegrityError), transaction.atomic():
        UserProfile.objects.create(user=second, orcid=CARBERRY)
    # Users without an ORCID do not collide with one another.
    UserProfile.objects.filter(user=first).update(orcid=None)
    UserProfile.objects.create(user=second, orcid=None)


def test_setorcid_sets_moves_and_clears_an_orcid(client_for):
    UserFactory(username="psyclay")
    client = client_for()

    assert command("setorcid", "psyclay", CARBERRY).strip() == f"user psyclay: ORCID {CARBERRY}"
    assert client.get(f"/dts/localuser/{CARBERRY}").json()["username"] == "psyclay"

    command("setorcid", "psyclay", "--clear")
    assert client.get(f"/dts/localuser/{CARBERRY}").status_code == 404


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody", CARBERRY), "no user named 'nobody'"),
        (("psyclay", "0000-0002-1825-0098"), "check character"),
        (("psyclay",), "either an ORCID or --clear"),
    ],
)
def test_setorcid_refuses_with_a_reason(args, message):
    UserFactory(username="psyclay")
    with pytest.raises(CommandError, match=message):
        command("setorcid", *args)


def test_createtoken_with_a_bad_orcid_creates_nothing():
    with pytest.raises(CommandError, match="check character"):
        command("createtoken", "newcomer", "--role", "data-user", "--orcid", "0000-0002-1825-0098")
    assert not UserFactory._meta.model.objects.filter(username="newcomer").exists()


def test_localuser_follows_the_dts_role_policy(client_for, client):
    assert client.get(f"/dts/localuser/{CARBERRY}").status_code == 401
    assert client_for(Role.ADMIN).get(f"/dts/localuser/{CARBERRY}").status_code == 403
