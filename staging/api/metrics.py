"""GET /metrics for Prometheus (see staging.metrics for what is counted where).

Open by default, like the probes: it is meant for the cluster network, not for clients. With
METRICS_TOKEN set, a scrape must send ``Authorization: Bearer <METRICS_TOKEN>``."""

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from staging.metrics import metrics_exposition


@require_GET
def metrics_view(request):
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("metrics need the scrape token\n", status=401)
            response["WWW-Authenticate"] = "Bearer"
            return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
