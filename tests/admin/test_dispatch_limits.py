"""Dispatch limits set in the admin: a store's max_active and an account's max_active_subjobs,
both read by the dispatcher's next pass."""

from datetime import timedelta

import pytest

from staging.models import AccountLimits, Store
from staging.selectors_accounts import limits_of
from tests.admin.test_dts_metadata import store_form
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_admin_role_caps_a_store_at_n_subjobs(admin_role_client, tmp_path):
    response = admin_role_client.post(
        "/admin/staging/store/add/", store_form(tmp_path, max_active=2)
    )

    assert response.status_code == 302
    store = Store.objects.get(slug="archive")
    assert store.max_active == 2
    page = admin_role_client.get(f"/admin/staging/store/{store.pk}/change/").content.decode()
    assert 'name="max_active"' in page
    response = admin_role_client.post(
        f"/admin/staging/store/{store.pk}/change/",
        store_form(tmp_path, max_active=""),
    )
    assert response.status_code == 302
    assert Store.objects.get(pk=store.pk).max_active is None  # blank: no limit


def test_a_store_limit_of_zero_is_refused(admin_role_client, tmp_path):
    response = admin_role_client.post(
        "/admin/staging/store/add/", store_form(tmp_path, max_active=0)
    )

    assert response.status_code == 200
    assert not Store.objects.filter(slug="archive").exists()


def test_an_account_limit_of_subjobs_at_once_is_set_per_user(admin_role_client):
    user = UserFactory(username="bulk")
    response = admin_role_client.post(
        "/admin/staging/accountlimits/add/", {"user": user.pk, "max_active_subjobs": 4}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert AccountLimits.objects.get(user=user).max_active_subjobs == 4
    assert limits_of(user).max_active_subjobs == 4


def test_an_operator_raises_waiting_jobs_to_the_highest_priority(operator_client):
    from staging.models import Job, JobStatus
    from tests.factories import JobFactory

    waiting, ended = JobFactory(), JobFactory(status=JobStatus.FINISHED)

    response = operator_client.post(
        "/admin/staging/job/",
        {"action": "raise_priority", "_selected_action": [waiting.pk, ended.pk]},
        follow=True,
    )

    said = [str(m) for m in response.context["messages"]]
    assert said == [
        "1 job raised to priority 5; their waiting sub-jobs go first from the next dispatch on. "
        "1 job already ended: left as is."
    ]
    assert Job.objects.get(pk=waiting.pk).priority == 5
    assert Job.objects.get(pk=ended.pk).priority == 3
    page = operator_client.get(f"/admin/staging/job/{waiting.pk}/change/").content.decode()
    assert "Priority" in page


def test_the_admin_refuses_a_watermark_that_is_no_amount_of_space(admin_role_client, tmp_path):
    response = admin_role_client.post(
        "/admin/staging/store/add/", store_form(tmp_path, free_space_low="plenty")
    )

    assert response.status_code == 200
    assert "is not an amount of space" in response.content.decode()
    assert not Store.objects.filter(slug="archive").exists()


def test_the_admin_keeps_a_stores_watermarks(admin_role_client, tmp_path):
    response = admin_role_client.post(
        "/admin/staging/store/add/",
        store_form(tmp_path, free_space_low="5%", free_space_high="200GB"),
    )

    assert response.status_code == 302
    store = Store.objects.get(slug="archive")
    assert (store.free_space_low, store.free_space_high) == ("5%", "200GB")


def test_the_admin_sets_a_stores_default_deadline_and_refuses_a_negative_one(
    admin_role_client, tmp_path
):
    response = admin_role_client.post(
        "/admin/staging/store/add/", store_form(tmp_path, default_deadline="P1D")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    store = Store.objects.get(slug="archive")
    assert store.default_deadline == timedelta(days=1)

    response = admin_role_client.post(
        f"/admin/staging/store/{store.pk}/change/", store_form(tmp_path, default_deadline="-1")
    )
    assert response.status_code == 200
    assert "default deadline must be a positive whole number" in response.content.decode()
    assert Store.objects.get(pk=store.pk).default_deadline == timedelta(days=1)
