"""Deliveries owed by a job's status changes and one attempt at sending each, to a real HTTP
receiver on a loopback port: signatures checked by an independent verifier, rotation, backoff,
giving up, 410 Gone, redirects and the address guard at send time."""

import base64
import hashlib
import hmac
import importlib.util
import json
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from staging.models import JobStatus, WebhookDelivery, WebhookEndpoint
from staging.models_webhooks import DeliveryStatus
from staging.services import transitions
from staging.services.jobs import job_cancel
from staging.services.webhooks import (
    deliveries_publish,
    delivery_send,
    endpoint_create,
    endpoint_rotate,
    pins_expiring_notify,
)
from tests.api.helpers import make_job
from tests.integration.stack import free_port
from tests.webhook_receiver import Receiver, verify
from tests.workers import REPO_ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def loopback_allowed(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("alice")


def hook(owner, url, events=()):
    return endpoint_create(
        owner=owner,
        url=url,
        event_types=list(events),
        description="",
        api_base="http://stagingsvc.example/",
    )


def finished_job(owner):
    job = make_job(owner=owner, status=JobStatus.RUNNING, items={"a.txt": JobStatus.FINISHED})
    job.subjobs.update(status=JobStatus.FINISHED)
    assert transitions.job_settle(job.pk) == JobStatus.FINISHED
    return job


def test_a_finished_job_is_posted_signed_with_its_public_fields(owner, receiver, loopback_allowed):
    endpoint = hook(owner, receiver.url)
    job = finished_job(owner)
    delivery = WebhookDelivery.objects.get(job=job)

    assert delivery_send(delivery.pk) == DeliveryStatus.DELIVERED

    (request,) = receiver.received
    assert verify(endpoint.secret, request.headers, request.body)
    assert request.headers["webhook-id"] == delivery.webhook_id
    assert request.path == "/hooks"
    body = delivery.payload
    assert body["type"] == "job.finished"
    assert body["data"]["jobId"] == str(job.uuid)
    assert body["data"]["status"] == "FINISHED"
    assert body["data"]["statusuri"] == f"http://stagingsvc.example/api/v1/task_status/{job.uuid}"
    assert json.loads(request.body) == body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert delivery.attempt_rows.get().status_code == 204


def test_a_tampered_body_does_not_verify(owner, receiver, loopback_allowed):
    endpoint = hook(owner, receiver.url)
    delivery_send(WebhookDelivery.objects.get(job=finished_job(owner)).pk)
    (request,) = receiver.received
    assert not verify(
        endpoint.secret, request.headers, request.body.replace(b"FINISHED", b"FAILED")
    )


def test_only_the_events_an_endpoint_asked_for_are_owed(owner, loopback_allowed):
    failed_only = hook(owner, "http://127.0.0.1:9/", events=["job.failed"])
    every = hook(owner, "http://127.0.0.1:9/")
    job = make_job(owner=owner)

    transitions.job_mark_running(job.pk)

    assert list(WebhookDelivery.objects.values_list("endpoint", "event")) == [
        (every.pk, "job.started")
    ]
    assert not failed_only.deliveries.exists()


def test_during_a_rotation_both_signatures_verify(owner, receiver, loopback_allowed):
    endpoint = hook(owner, receiver.url)
    old_secret = endpoint.secret
    endpoint_rotate(endpoint=endpoint)

    delivery_send(WebhookDelivery.objects.get(job=finished_job(owner)).pk)

    (request,) = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(old_secret, request.headers, request.body)
    assert verify(endpoint.secret, request.headers, request.body)


def test_after_the_overlap_only_the_new_secret_signs(owner, receiver, loopback_allowed):
    endpoint = hook(owner, receiver.url)
    old_secret = endpoint.secret
    endpoint_rotate(endpoint=endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_valid_until=timezone.now() - timedelta(seconds=1)
    )

    delivery_send(WebhookDelivery.objects.get(job=finished_job(owner)).pk)

    (request,) = receiver.received
    assert not verify(old_secret, request.headers, request.body)
    assert verify(endpoint.secret, request.headers, request.body)


def test_a_500_is_retried_with_backoff_then_given_up_and_every_attempt_kept(
    owner, receiver, loopback_allowed, settings
):
    settings.WEBHOOK_BACKOFF_SECONDS = [60, 600]
    settings.WEBHOOK_GIVE_UP_HOURS = 0.5  # attempts at 0, +1 min, +11 min, +21 min; not +31
    receiver.answer = 500
    hook(owner, receiver.url)
    delivery = WebhookDelivery.objects.get(job=finished_job(owner))

    statuses = []
    for _ in range(6):
        sent_at = timezone.now()
        statuses.append(delivery_send(delivery.pk))
        delivery.refresh_from_db()
        if delivery.status == DeliveryStatus.FAILED:
            break
        wait = delivery.next_attempt_at - sent_at
        assert wait >= timedelta(seconds=60 if delivery.attempts == 1 else 600)
        assert delivery_send(delivery.pk) is None  # not due yet: nothing sent
        # Time passes: move the delivery's clock back instead of waiting.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            created_at=delivery.created_at - wait, next_attempt_at=timezone.now()
        )

    assert statuses == ["pending", "pending", "pending", "failed"]
    assert len(receiver.received) == 4
    attempts = list(delivery.attempt_rows.all())
    assert [a.status_code for a in attempts] == [500] * 4
    assert all(len(a.response_prefix) == 256 for a in attempts)
    assert delivery.next_attempt_at is None


def test_a_receiver_that_is_down_is_recorded_and_tried_again(owner, loopback_allowed):
    hook(owner, f"http://127.0.0.1:{free_port()}/hooks")
    delivery = WebhookDelivery.objects.get(job=finished_job(owner))

    assert delivery_send(delivery.pk) == DeliveryStatus.PENDING

    attempt = delivery.attempt_rows.get()
    assert attempt.status_code is None
    assert "ConnectionRefused" in attempt.error


def test_410_gone_switches_the_endpoint_off(owner, receiver, loopback_allowed):
    receiver.answer = 410
    endpoint = hook(owner, receiver.url)

    assert delivery_send(WebhookDelivery.objects.get(job=finished_job(owner)).pk) == "failed"

    endpoint.refresh_from_db()
    assert not endpoint.active
    assert not WebhookDelivery.objects.filter(job=make_job(owner=owner)).exists()


def test_redirects_are_not_followed(owner, receiver, loopback_allowed):
    target = Receiver().start()
    try:
        receiver.redirect_to = target.url
        hook(owner, receiver.url)
        delivery = WebhookDelivery.objects.get(job=finished_job(owner))

        assert delivery_send(delivery.pk) == DeliveryStatus.PENDING

        assert delivery.attempt_rows.get().status_code == 302
        assert target.received == []
    finally:
        target.stop()


def test_the_address_is_checked_again_at_send_time(owner, receiver, loopback_allowed, settings):
    hook(owner, receiver.url)
    delivery = WebhookDelivery.objects.get(job=finished_job(owner))
    settings.WEBHOOK_ALLOWED_NETWORKS = []  # as if its name now resolved to loopback

    delivery_send(delivery.pk)

    assert receiver.received == []
    assert "loopback" in delivery.attempt_rows.get().error


def test_expiring_pins_are_announced_once_per_job(owner, loopback_allowed, settings):
    settings.WEBHOOK_PIN_EXPIRING_BEFORE = timedelta(days=1)
    hook(owner, "http://127.0.0.1:9/", events=["pin.expiring"])
    job = finished_job(owner)
    job.pins.update(expires_at=timezone.now() + timedelta(hours=2))
    later = make_job(owner=owner, status=JobStatus.FINISHED)
    later.pins.update(expires_at=timezone.now() + timedelta(days=3))

    assert pins_expiring_notify() == 1
    assert pins_expiring_notify() == 0

    (delivery,) = WebhookDelivery.objects.filter(event="pin.expiring")
    assert delivery.job_id == job.pk
    assert delivery.payload["data"]["expires_at"]


def _readme_verify():
    """The verify function of the README's example, run as a reader would copy it."""
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("```python\n", readme.index("## Be told instead of polling")) + 10
    namespace = {"base64": base64, "hashlib": hashlib, "hmac": hmac, "time": time}
    exec(readme[start : readme.index("```", start)], namespace)
    return namespace["verify"]


def _example_receiver_verify():
    spec = importlib.util.spec_from_file_location(
        "receiver", REPO_ROOT / "docs/webhook_receiver.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verify


def test_the_documented_receivers_verify_a_real_delivery(owner, receiver, loopback_allowed):
    endpoint = hook(owner, receiver.url)
    delivery_send(WebhookDelivery.objects.get(job=finished_job(owner)).pk)
    (request,) = receiver.received

    for verify_as_documented in (_readme_verify(), _example_receiver_verify()):
        assert verify_as_documented(endpoint.secret, request.headers, request.body)
        assert not verify_as_documented(endpoint.secret, request.headers, request.body + b" ")
        stale = {**request.headers, "webhook-timestamp": str(int(time.time()) - 3600)}
        assert not verify_as_documented(endpoint.secret, stale, request.body)


@pytest.mark.parametrize(
    "items, event",
    [
        ({"a": JobStatus.FINISHED, "b": JobStatus.FINISHED}, "job.finished"),
        ({"a": JobStatus.FINISHED, "b": JobStatus.FAILED}, "job.partially_failed"),
        ({"a": JobStatus.FAILED, "b": JobStatus.FAILED}, "job.failed"),
        ({"a": JobStatus.CANCELLED, "b": JobStatus.CANCELLED}, "job.cancelled"),
    ],
)
def test_each_ending_owes_its_event(owner, loopback_allowed, items, event):
    hook(owner, "http://127.0.0.1:9/")
    job = make_job(owner=owner, status=JobStatus.RUNNING, items=items)
    job.subjobs.update(status=JobStatus.FINISHED)

    transitions.job_settle(job.pk)

    assert list(WebhookDelivery.objects.values_list("event", "payload__data__status")) == [
        (event, job.__class__.objects.get(pk=job.pk).status)
    ]


def test_a_cancelled_queued_job_owes_job_cancelled(owner, loopback_allowed):
    hook(owner, "http://127.0.0.1:9/")
    job = make_job(owner=owner)

    job_cancel(job=job)

    assert list(WebhookDelivery.objects.values_list("event", flat=True)) == ["job.cancelled"]


def test_a_job_nobody_listens_to_owes_nothing(owner):
    job_cancel(job=make_job(owner=owner))
    assert not WebhookDelivery.objects.exists()


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_attempt_deadline(
    owner, loopback_allowed, settings
):
    settings.WEBHOOK_ATTEMPT_SECONDS = 1
    settings.WEBHOOK_READ_TIMEOUT = 2  # each byte comes well within it
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\n" * 6:
                if stop.wait(0.1):
                    return
                try:
                    peer.sendall(bytes([byte]))
                except OSError:
                    return  # the sender hung up

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    hook(owner, f"http://127.0.0.1:{listener.getsockname()[1]}/hooks")
    delivery = WebhookDelivery.objects.get(job=finished_job(owner))
    try:
        assert delivery_send(delivery.pk) == DeliveryStatus.PENDING
    finally:
        stop.set()
        dripper.join()
        listener.close()

    (attempt,) = delivery.attempt_rows.all()
    assert attempt.status_code is None
    assert "TimeoutError" in attempt.error
    assert "WEBHOOK_ATTEMPT_SECONDS" in attempt.error


@pytest.mark.django_db(transaction=True)
def test_a_late_duplicate_attempt_cannot_undo_a_delivery(owner, loopback_allowed):
    """The first attempt outlives its claim; a second send claims the delivery and delivers it;
    the first then hears a 500 and must not turn DELIVERED back into PENDING."""
    first_arrived, first_may_answer = threading.Event(), threading.Event()
    requests: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            requests.append(1)
            if len(requests) == 1:
                first_arrived.set()
                first_may_answer.wait(30)
                self.send_response(500)
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook(owner, f"http://127.0.0.1:{server.server_address[1]}/hooks")
    delivery = WebhookDelivery.objects.get(job=finished_job(owner))
    outcomes: list = []

    def first_send() -> None:
        try:
            outcomes.append(delivery_send(delivery.pk))
        finally:
            connections.close_all()

    first = threading.Thread(target=first_send)
    first.start()
    try:
        assert first_arrived.wait(30)
        # The first sender's claim ran out (as it does when an attempt outlives its window).
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        assert delivery_send(delivery.pk) == DeliveryStatus.DELIVERED
    finally:
        first_may_answer.set()
        first.join()
        server.shutdown()
        server.server_close()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.next_attempt_at is None
    assert outcomes == [None]  # the late attempt's outcome was not recorded as the delivery's
    assert sorted(a.status_code for a in delivery.attempt_rows.all()) == [204, 500]


def test_sends_travel_on_a_queue_of_their_own(owner, loopback_allowed, broker, settings):
    hook(owner, "http://127.0.0.1:9/hooks")
    delivery = WebhookDelivery.objects.get(job=finished_job(owner))

    deliveries_publish([delivery.pk])

    assert broker.llen(f"{settings.BROKER_KEY_PREFIX}control") == 0
    (message,) = broker.lrange(f"{settings.BROKER_KEY_PREFIX}webhooks", 0, -1)
    assert json.loads(message)["headers"]["task"] == "tasks.maintenance.webhook_send"
