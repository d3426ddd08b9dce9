"""Authentication for a status poll: one query for a warm poll, remembered by the process for at
most AUTH_CACHE_SECONDS, and a token's expiry always exact."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken

from staging.models import JobStatus
from staging.roles import Role
from staging.token_cache import TokenCache, token_cache
from tests.api.helpers import make_job

POLLS = ["/api/v1/task_status/{id}/peek", "/api/v1/task_status/{id}", "/dts/staging?id={id}"]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """The process's token memory on a clock the test moves."""
    fake = FakeClock()
    monkeypatch.setattr(token_cache, "_clock", fake)
    return fake


def in_another_process(sql: str, *params) -> None:
    """A change made by another process (raw SQL: no signal reaches this one)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def poll(client, job, url=POLLS[0]):
    return client.get(url.format(id=job.uuid))


@pytest.mark.parametrize("url", POLLS)
def test_a_warm_poll_costs_one_query(api_as, django_assert_num_queries, url):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    assert poll(client, job, url).status_code == 200

    with django_assert_num_queries(1):
        assert poll(client, job, url).status_code == 200


@pytest.mark.parametrize("url", POLLS)
def test_a_cold_poll_costs_at_most_two_queries(api_as, django_assert_max_num_queries, url):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    assert poll(client, job, url).status_code == 200
    token_cache.clear()  # a newly started process,
    cache.clear()  # and nothing of the account in the shared cache either

    with django_assert_max_num_queries(2):
        assert poll(client, job, url).status_code == 200


def test_a_warm_304_costs_one_query(api_as, django_assert_num_queries):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    etag = poll(client, job)["ETag"]

    with django_assert_num_queries(1):
        assert (
            client.get(f"/api/v1/task_status/{job.uuid}/peek", HTTP_IF_NONE_MATCH=etag).status_code
            == 304
        )


def test_a_revoked_token_is_refused_within_the_bound(api_as, settings, clock):
    settings.AUTH_CACHE_SECONDS = 2
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    assert poll(client, job).status_code == 200
    in_another_process("DELETE FROM knox_authtoken WHERE user_id = %s", client.user.pk)

    clock.now += 1.9
    assert poll(client, job).status_code == 200  # still honoured, within the bound
    clock.now += 0.2
    refused = poll(client, job)
    assert refused.status_code == 401
    assert "not a token this service knows" in refused.json()["detail"]


def test_an_expired_token_is_refused_at_once_even_when_remembered(
    api_as, settings, clock, monkeypatch
):
    settings.AUTH_CACHE_SECONDS = 60
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    AuthToken.objects.filter(user=client.user).update(expiry=timezone.now() + timedelta(hours=1))
    assert poll(client, job).status_code == 200
    (token,) = AuthToken.objects.filter(user=client.user)
    assert len(token_cache) == 1

    just_after_expiry = token.expiry + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: just_after_expiry)
    refused = poll(client, job)

    assert refused.status_code == 401
    assert "This token has expired" in refused.json()["detail"]
    assert not AuthToken.objects.filter(user=client.user).exists()


def test_a_removed_role_takes_effect_within_the_bound(api_as, settings, clock):
    settings.AUTH_CACHE_SECONDS = 2
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    assert poll(client, job).status_code == 200
    in_another_process("DELETE FROM auth_user_groups WHERE user_id = %s", client.user.pk)

    clock.now += 1.9
    assert poll(client, job).status_code == 200
    clock.now += 0.2
    refused = poll(client, job)
    assert refused.status_code == 403
    assert "Your role (no role) does not allow this call" in refused.json()["detail"]


def test_a_revocation_or_role_change_made_by_this_process_takes_effect_at_once(
    api_as, settings, clock
):
    settings.AUTH_CACHE_SECONDS = 60
    revoked, demoted = api_as(Role.DATA_USER), api_as(Role.DATA_USER, username="other")
    jobs = [make_job(owner=c.user, status=JobStatus.RUNNING) for c in (revoked, demoted)]
    assert [poll(c, j).status_code for c, j in zip((revoked, demoted), jobs, strict=True)] == [
        200,
        200,
    ]

    AuthToken.objects.filter(user=revoked.user).delete()
    demoted.user.groups.remove(Group.objects.get(name=Role.DATA_USER))

    assert [poll(c, j).status_code for c, j in zip((revoked, demoted), jobs, strict=True)] == [
        401,
        403,
    ]


def test_a_deactivated_user_is_refused_at_once_by_this_process(api_as, settings, clock):
    settings.AUTH_CACHE_SECONDS = 60
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    assert poll(client, job).status_code == 200

    client.user.is_active = False
    client.user.save()

    refused = poll(client, job)
    assert (refused.status_code, refused.json()["detail"]) == (401, "User inactive or deleted.")


def test_zero_seconds_reads_the_database_on_every_request(
    api_as, settings, django_assert_num_queries
):
    settings.AUTH_CACHE_SECONDS = 0
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)
    assert poll(client, job).status_code == 200
    assert len(token_cache) == 0

    with django_assert_num_queries(2):  # the token with its user and roles; the job
        assert poll(client, job).status_code == 200
    AuthToken.objects.filter(user=client.user).delete()
    assert poll(client, job).status_code == 401


def test_the_memory_is_bounded_and_forgets_the_least_recently_used():
    memory = TokenCache(max_entries=2, clock=FakeClock())
    token = AuthToken(expiry=None)
    for digest in ("a", "b"):
        memory.put(digest, object(), token)
    memory.get("a")
    memory.put("c", object(), token)
    assert len(memory) == 2
    assert memory.get("b") is None
    assert memory.get("a") is not None and memory.get("c") is not None
