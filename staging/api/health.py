"""Liveness (process up) and readiness (database and broker answer) probes."""

from django.conf import settings
from django.http import JsonResponse
from health_check.checks import Database
from health_check.contrib.redis import Redis
from health_check.views import HealthCheckView
from redis.asyncio import Redis as AsyncRedis


def healthz(request):
    return JsonResponse({"status": "ok"})


def _broker_client() -> AsyncRedis:
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    return AsyncRedis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


class ReadinessView(HealthCheckView):
    """Answers 503 (not the library's 500) when a dependency is down: the service is fine, it is
    just not ready, and load balancers and Kubernetes read 503 that way."""

    checks = (Database, (Redis, {"client_factory": _broker_client}))

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response
