"""Webhooks in the admin: deliveries with their attempts, filters, "send again", endpoints
without their secrets; and a look in a real browser at two widths."""

from datetime import timedelta

import pytest
from django.utils import timezone

from staging.models import JobStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from staging.models_webhooks import DeliveryStatus
from tests.admin.test_browser import ARTIFACTS, staff_page
from tests.api.helpers import make_job
from tests.factories import UserFactory

DELIVERIES = "/admin/staging/webhookdelivery/"


def deliveries_of_every_kind():
    owner = UserFactory(username="grace")
    endpoint = WebhookEndpoint.objects.create(
        owner=owner,
        url="https://hooks.example.org/staging/events",
        secret="whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
        api_base="https://staging.example.org/",
        description="pipeline trigger",
    )
    job = make_job(owner=owner, status=JobStatus.FINISHED)
    rows = {}
    for status, event, codes in [
        (DeliveryStatus.DELIVERED, "job.finished", [503, 204]),
        (DeliveryStatus.FAILED, "job.failed", [500, 500, 500]),
        (DeliveryStatus.PENDING, "job.started", [None]),
    ]:
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            job=job,
            event=event,
            status=status,
            attempts=len(codes),
            payload={"type": event, "data": {"jobId": str(job.uuid)}},
            next_attempt_at=timezone.now() + timedelta(minutes=2) if status == "pending" else None,
        )
        for code in codes:
            WebhookAttempt.objects.create(
                delivery=delivery,
                status_code=code,
                duration_ms=42,
                error="" if code else "ConnectionRefusedError: [Errno 111] Connection refused",
                response_prefix="upstream unavailable" if code and code >= 500 else "",
            )
        rows[status] = delivery
    return endpoint, rows


@pytest.mark.django_db
def test_deliveries_are_filtered_by_status_and_show_their_attempts(operator_client):
    _, rows = deliveries_of_every_kind()

    failed = operator_client.get(DELIVERIES, {"status__exact": "failed"})
    page = operator_client.get(f"{DELIVERIES}{rows['failed'].pk}/change/")

    assert failed.status_code == 200
    assert rows["failed"].webhook_id in failed.content.decode()
    assert rows["delivered"].webhook_id not in failed.content.decode()
    assert page.status_code == 200
    assert page.content.decode().count("upstream unavailable") == 3


@pytest.mark.django_db
def test_send_again_puts_deliveries_back_in_the_queue(operator_client):
    _, rows = deliveries_of_every_kind()

    response = operator_client.post(
        DELIVERIES,
        {"action": "send_again", "_selected_action": [rows["failed"].pk]},
        follow=True,
    )

    assert "1 deliveries queued to be sent again" in response.content.decode()
    rows["failed"].refresh_from_db()
    assert rows["failed"].status == DeliveryStatus.PENDING
    assert rows["failed"].next_attempt_at <= timezone.now()


@pytest.mark.django_db
def test_an_endpoint_page_never_shows_its_secret(operator_client):
    endpoint, _ = deliveries_of_every_kind()
    page = operator_client.get(f"/admin/staging/webhookendpoint/{endpoint.pk}/change/")
    assert page.status_code == 200
    assert "pipeline trigger" in page.content.decode()
    assert endpoint.secret not in page.content.decode()


@pytest.mark.parametrize("width", [1280, 1920])
def test_the_webhook_pages_at_two_widths(live_server, transactional_db, width):
    _, rows = deliveries_of_every_kind()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with staff_page(live_server.url, width=width) as page:
        page.goto(f"{live_server.url}{DELIVERIES}")
        assert page.locator("#result_list tbody tr").count() == 3
        # Nothing wider than the window: no horizontal scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=ARTIFACTS / f"webhook-deliveries-{width}.png", full_page=True)
        page.goto(f"{live_server.url}{DELIVERIES}{rows['failed'].pk}/change/")
        assert page.locator(".tabular tbody tr").count() >= 3
        page.screenshot(path=ARTIFACTS / f"webhook-delivery-{width}.png", full_page=True)
        page.goto(f"{live_server.url}/admin/staging/webhookendpoint/")
        page.screenshot(path=ARTIFACTS / f"webhook-endpoints-{width}.png", full_page=True)
