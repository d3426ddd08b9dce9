"""/api/v1/webhooks/: register (the secret once), list, change, delete, rotate, deliveries;
others' endpoints unknown; URLs into our own network refused (SSRF); a job's one-off callback."""

import base64
import socket

import psycopg
import pytest
from django.db import connection

from staging.models import Job, JobCallback, WebhookDelivery, WebhookEndpoint
from staging.roles import Role
from staging.services import transitions
from staging.services.dispatch import ADVISORY_LOCK_ID
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db

HOOKS = "/api/v1/webhooks/"
PUBLIC_URL = "http://93.184.215.14/hooks"  # a global address; nothing is sent in these tests


@pytest.fixture
def alice(api_as):
    return api_as(Role.DATA_USER, username="alice")


@pytest.fixture
def loopback_allowed(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def register(client, url=PUBLIC_URL, **fields):
    return client.post(HOOKS, {"url": url, **fields}, format="json")


def test_registering_shows_the_secret_once(alice):
    response = register(alice, event_types=["job.finished"], description="my pipeline")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24
    assert (body["url"], body["event_types"], body["description"]) == (
        PUBLIC_URL,
        ["job.finished"],
        "my pipeline",
    )
    listed = alice.get(HOOKS).json()
    one = alice.get(f"{HOOKS}{body['id']}/").json()
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0] and "secret" not in one


def test_an_unknown_event_type_is_a_400_naming_it(alice):
    response = register(alice, event_types=["job.exploded"])
    assert response.status_code == 400
    assert b"job.exploded" in response.content


def test_another_users_webhook_is_404_everywhere(alice, api_as):
    hook = register(alice).json()["id"]
    bob = api_as(Role.DATA_USER, username="bob")

    assert_problem(bob.get(f"{HOOKS}{hook}/"), 404, str(hook))
    assert_problem(bob.patch(f"{HOOKS}{hook}/", {"active": False}, format="json"), 404)
    assert_problem(bob.delete(f"{HOOKS}{hook}/"), 404)
    assert_problem(bob.post(f"{HOOKS}{hook}/rotate"), 404)
    assert_problem(bob.get(f"{HOOKS}{hook}/deliveries/"), 404)
    assert bob.get(HOOKS).json() == []
    assert WebhookEndpoint.objects.get(pk=hook).active


def test_change_and_delete(alice):
    hook = register(alice).json()["id"]

    changed = alice.patch(f"{HOOKS}{hook}/", {"event_types": ["job.failed"]}, format="json")
    assert changed.status_code == 200
    assert changed.json()["event_types"] == ["job.failed"]
    assert changed.json()["url"] == PUBLIC_URL
    assert alice.delete(f"{HOOKS}{hook}/").status_code == 204
    assert alice.get(f"{HOOKS}{hook}/").status_code == 404


def test_rotation_gives_a_new_secret_and_keeps_the_old_one_for_a_while(alice, settings):
    settings.WEBHOOK_SECRET_ROTATION_HOURS = 24
    created = register(alice).json()

    rotated = alice.post(f"{HOOKS}{created['id']}/rotate")

    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    assert body["previous_secret_valid_until"] is not None
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert (endpoint.secret, endpoint.previous_secret) == (body["secret"], created["secret"])


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://127.0.0.1:9/hooks", ["127.0.0.1", "loopback", "WEBHOOK_ALLOWED_NETWORKS"]),
        ("http://169.254.169.254/latest/meta-data/", ["169.254.169.254", "link-local"]),
        ("http://10.1.2.3/hooks", ["10.1.2.3", "private"]),
        ("http://[::1]/hooks", ["::1", "loopback"]),
        ("http://0.0.0.0/hooks", ["0.0.0.0"]),
        ("ftp://example.org/hooks", ["http(s)"]),
    ],
)
def test_urls_into_our_own_network_are_refused(alice, url, words):
    response = register(alice, url=url)
    if url.startswith("ftp"):  # the URL field refuses it before the guard does
        assert response.status_code == 400
        return
    assert_problem(response, 400, *words)
    assert not WebhookEndpoint.objects.exists()


def test_a_name_resolving_to_a_private_address_is_refused(alice, monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "hooks.example.org":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.7.7", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    response = register(alice, url="https://hooks.example.org/in")
    assert_problem(response, 400, "hooks.example.org", "192.168.7.7", "private")


def test_loopback_is_accepted_once_an_operator_allows_it(alice, loopback_allowed):
    assert register(alice, url="http://127.0.0.1:9/hooks").status_code == 201


def test_a_job_callback_gets_its_own_secret_once(alice, archive_files, loopback_allowed):
    (file,) = archive_files({"a.txt": b"alpha"})
    body = {"ids": [file.id], "callback": {"url": "http://127.0.0.1:9/cb"}}

    first = alice.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = alice.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert first.status_code == 202, first.content
    callback = first.json()["callback"]
    assert callback["url"] == "http://127.0.0.1:9/cb"
    assert callback["secret"].startswith("whsec_")
    assert "callback" not in again.json()
    job = Job.objects.get(uuid=first.json()["jobId"])
    assert JobCallback.objects.get(job=job).secret == callback["secret"]


def test_a_job_with_an_unsafe_callback_is_refused_and_not_created(alice, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = alice.post(
        "/api/v1/jobs/",
        {"ids": [file.id], "callback": {"url": "http://169.254.169.254/"}},
        format="json",
    )
    assert_problem(response, 400, "169.254.169.254")
    assert not Job.objects.exists()


def test_deliveries_are_listed_with_their_attempts(alice, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    hook = register(alice, event_types=["job.started"]).json()["id"]
    job_id = alice.post("/api/v1/jobs/", {"ids": [file.id]}, format="json").json()["jobId"]

    transitions.job_mark_running(Job.objects.get(uuid=job_id).pk)

    page = alice.get(f"{HOOKS}{hook}/deliveries/").json()
    (delivery,) = page["results"]
    assert (delivery["event"], delivery["jobId"], delivery["status"]) == (
        "job.started",
        job_id,
        "pending",
    )
    assert delivery["attempts"] == []
    assert delivery["payload"]["data"]["statusuri"].endswith(f"/api/v1/task_status/{job_id}")
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize("endpoint_id", ["%C2%B2", "%D9%A3", "1%C2%B2"])
def test_an_id_of_digits_that_are_not_ascii_is_a_404(alice, endpoint_id):
    # '²' and '٣' are digits to str.isdigit, not to int().
    for route in ("", "rotate", "deliveries/"):
        method = alice.post if route == "rotate" else alice.get
        response = method(f"{HOOKS}{endpoint_id}/{route}")
        assert response.status_code == 404, (route, response.content)


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:7f00:1::]/hook",  # 6to4 around 127.0.0.1
        "http://[2002:a00:1::]/hook",  # 6to4 around 10.0.0.1
        "http://[fec0::1]/hook",  # site-local (deprecated, still routed by some hosts)
        "http://192.0.0.8/hook",  # IETF protocol assignments
    ],
)
def test_addresses_that_wrap_or_are_not_public_are_refused(alice, url):
    response = register(alice, url=url)
    assert_problem(response, 400)
    assert not WebhookEndpoint.objects.exists()


def test_a_tape_request_born_failed_owes_its_job_failed_event(client_for, store):
    client = client_for(Role.DATA_USER, username="tina")
    assert register(client).status_code == 201

    response = client.post("/tape/api/v1/stage", {"files": [{"path": "/gone.txt"}]}, format="json")

    assert response.status_code == 201, response.content
    job = Job.objects.get(uuid=response.json()["requestId"])
    assert job.status == "FAILED"
    (delivery,) = WebhookDelivery.objects.filter(job=job)
    assert delivery.event == "job.failed"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads a PostgreSQL lock")
def test_a_callback_s_host_is_resolved_before_the_submission_takes_any_lock(
    alice, archive_files, monkeypatch
):
    # A resolver that answers slowly must hold up this request only: not the owner's or the
    # store's submissions, nor every dispatch pass (a job of one sub-job takes the dispatcher's
    # lock as it is written).
    (file,) = archive_files({"a.txt": b"alpha"})
    real = socket.getaddrinfo
    free_while_resolving = []

    def resolver(host, *args, **kwargs):
        if host != "hooks.example.org":
            return real(host, *args, **kwargs)
        settings_dict = connection.settings_dict
        with psycopg.connect(
            dbname=settings_dict["NAME"],
            user=settings_dict["USER"],
            host=settings_dict["HOST"],
            port=settings_dict["PORT"] or 5432,
            autocommit=True,
        ) as other:
            free_while_resolving.append(
                other.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_ID]).fetchone()[0]
            )
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    body = {"ids": [file.id], "callback": {"url": "https://hooks.example.org/cb"}}
    response = alice.post("/api/v1/jobs/", body, format="json")

    assert response.status_code == 202, response.content
    assert free_while_resolving == [True]
