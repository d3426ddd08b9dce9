"""Webhooks end to end: a client registers over real HTTP, real `celery worker` processes stage
its job and send the events to a real receiver on a loopback port, which verifies them; a
receiver down for a while, one that answers 500, and a broker that lost the send message."""

import itertools
import json

import pytest
import requests
from django.contrib.auth import get_user_model

from staging.models import WebhookDelivery
from staging.models_webhooks import DeliveryStatus
from staging.roles import Role
from staging.services import transitions
from staging.services.accounts import token_create
from staging.services.webhooks import endpoint_create
from tests.api.helpers import make_job
from tests.integration.stack import free_port
from tests.webhook_receiver import Receiver, verify
from tests.workers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOOPBACK = {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}


@pytest.fixture
def api(live_server, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    session = requests.Session()
    session.headers["Authorization"] = (
        f"Bearer {token_create(username='alice', role=Role.DATA_USER)}"
    )
    session.base = live_server.url
    return session


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


def register(api, url: str) -> dict:
    response = api.post(f"{api.base}/api/v1/webhooks/", json={"url": url}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def events(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.received]


def test_a_staged_job_is_announced_to_its_endpoint_and_its_callback(
    api, receiver, archive_files, start_worker
):
    endpoint = register(api, receiver.url)
    callback_receiver = Receiver().start()
    try:
        (file,) = archive_files({"run1/reads.fastq": b"ACGT\n"})
        # Shaped as the Procfile runs them: sends on a threaded worker of their own.
        start_worker(concurrency=2, queues="staging,control", **LOOPBACK)
        start_worker(concurrency=4, queues="webhooks", pool="threads", **LOOPBACK)

        created = api.post(
            f"{api.base}/api/v1/jobs/",
            json={"ids": [file.id], "callback": {"url": callback_receiver.url}},
            timeout=10,
        )

        assert created.status_code == 202, created.text
        job_id = created.json()["jobId"]
        callback_secret = created.json()["callback"]["secret"]
        wait_until(lambda: "job.finished" in events(receiver), what="job.finished at the endpoint")
        wait_until(lambda: "job.finished" in events(callback_receiver), what="at the callback")
        for got, secret in ((receiver, endpoint["secret"]), (callback_receiver, callback_secret)):
            assert events(got) == ["job.started", "job.finished"]
            finished = got.received[-1]
            assert verify(secret, finished.headers, finished.body)
            body = json.loads(finished.body)
            assert (body["data"]["jobId"], body["data"]["status"]) == (job_id, "FINISHED")
            assert body["data"]["statusuri"] == created.json()["statusuri"]
        status = api.get(body["data"]["statusuri"] + "/peek", timeout=10).json()["status"]
        assert status == "FINISHED"
        deliveries = api.get(
            f"{api.base}/api/v1/webhooks/{endpoint['id']}/deliveries/", timeout=10
        ).json()["results"]
        assert [(d["event"], d["status"], len(d["attempts"])) for d in deliveries] == [
            ("job.finished", "delivered", 1),
            ("job.started", "delivered", 1),
        ]
    finally:
        callback_receiver.stop()


def test_a_receiver_down_for_a_while_gets_the_event_once_it_is_back(
    api, archive_files, start_worker
):
    down = Receiver(port=free_port())
    endpoint = register(api, down.url)
    (file,) = archive_files({"a.txt": b"alpha"})
    start_worker(concurrency=2, WEBHOOK_BACKOFF_SECONDS="0.5,1", **LOOPBACK)
    api.post(f"{api.base}/api/v1/jobs/", json={"ids": [file.id]}, timeout=10)

    finished = WebhookDelivery.objects.filter(event="job.finished")
    wait_until(
        lambda: finished.filter(attempts__gte=2).exists(), timeout=60, what="two failed attempts"
    )
    down.start()
    try:
        wait_until(
            lambda: finished.filter(status=DeliveryStatus.DELIVERED).exists(),
            timeout=60,
            what="delivery once the receiver is back",
        )
        delivery = finished.get()
        attempts = list(delivery.attempt_rows.all())
        assert all(a.status_code is None and a.error for a in attempts[:-1])
        assert attempts[-1].status_code == 204
        gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(attempts)]
        assert all(gap >= 0.5 for gap in gaps)  # the backoff, not a busy loop
        got = [r for r in down.received if json.loads(r.body)["type"] == "job.finished"]
        assert len(got) == 1
        assert verify(endpoint["secret"], got[0].headers, got[0].body)
    finally:
        down.stop()


def test_a_receiver_answering_500_is_retried_then_given_up_visibly(
    api, receiver, archive_files, start_worker
):
    receiver.answer = 500
    endpoint = register(api, receiver.url)
    (file,) = archive_files({"a.txt": b"alpha"})
    # Give up after 3.6 s with 0.3 s between attempts.
    start_worker(
        concurrency=2, WEBHOOK_BACKOFF_SECONDS="0.3", WEBHOOK_GIVE_UP_HOURS="0.001", **LOOPBACK
    )
    api.post(f"{api.base}/api/v1/jobs/", json={"ids": [file.id]}, timeout=10)

    finished = WebhookDelivery.objects.filter(event="job.finished")
    wait_until(
        lambda: finished.filter(status=DeliveryStatus.FAILED).exists(),
        timeout=60,
        what="the delivery given up",
    )
    listed = api.get(f"{api.base}/api/v1/webhooks/{endpoint['id']}/deliveries/", timeout=10).json()[
        "results"
    ]
    given_up = next(d for d in listed if d["event"] == "job.finished")
    assert given_up["status"] == "failed"
    assert len(given_up["attempts"]) >= 2
    assert {a["status_code"] for a in given_up["attempts"]} == {500}
    sent = [r for r in receiver.received if json.loads(r.body)["type"] == "job.finished"]
    assert len(sent) == len(given_up["attempts"])


def test_beat_sends_a_delivery_whose_message_the_broker_lost(
    receiver, broker, start_worker, start_beat, settings
):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    owner = get_user_model().objects.create_user("alice")
    endpoint = endpoint_create(
        owner=owner, url=receiver.url, event_types=[], description="", api_base="http://x/"
    )
    job = make_job(owner=owner)
    transitions.job_mark_running(job.pk)  # the delivery is written and its message published
    broker.flush_test_keys()  # ... and lost with the broker's data
    assert WebhookDelivery.objects.get(job=job).status == DeliveryStatus.PENDING

    start_worker(concurrency=1, queues="control,webhooks", **LOOPBACK)
    start_beat(WEBHOOK_RESEND_INTERVAL_SECONDS="1", WEBHOOK_RESEND_AFTER_SECONDS="1")

    wait_until(lambda: receiver.received, timeout=60, what="the delivery sent by beat")
    (request,) = receiver.received
    assert verify(endpoint.secret, request.headers, request.body)
    assert json.loads(request.body)["type"] == "job.started"
