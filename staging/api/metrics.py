"""GET /metrics for Prometheus (see staging.metrics for what is counted where).

Open by default on a laptop, like the probes; the production settings require METRICS_TOKEN,
and a scrape must then send ``Authorization: Bearer <METRICS_TOKEN>``. The text is cached for
METRICS_CACHE_SECONDS (in the shared cache), so scrapes by several Prometheus servers, or a
flood of them, cost the database one round of GROUP BYs per interval."""

import hmac

from django.conf import settings
from django.core.cache import cache
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
    seconds = settings.METRICS_CACHE_SECONDS
    body = (
        cache.get_or_set("metrics:exposition", metrics_exposition, timeout=seconds)
        if seconds > 0
        else metrics_exposition()
    )
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
