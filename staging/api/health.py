"""Liveness (process up) and readiness (database and broker answer) probes."""

from django.conf import settings
from django.http import JsonResponse
from health_check.checks import Database
from health_check.contrib.redis import Redis
from health_check.views import HealthCheckView
from redis.asyncio import Redis as AsyncRedis

from staging.dependencies import broker_redis_url


def healthz(request):
    return JsonResponse({"status": "ok"})


def _broker_client() -> AsyncRedis:
    timeout = settings.BROKER_PING_TIMEOUT_SECONDS
    return AsyncRedis.from_url(
        broker_redis_url(), socket_connect_timeout=timeout, socket_timeout=timeout
    )


class ReadinessView(HealthCheckView):
    """Answers 503 (not the library's 500) when a dependency is down: the service is fine, it is
    just not ready, and load balancers and Kubernetes read 503 that way. The body names each
    check with "OK" or what failed (``Accept: application/json`` for JSON)."""

    checks = (Database, (Redis, {"client_factory": _broker_client}))

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
            response["Retry-After"] = str(settings.UNAVAILABLE_RETRY_AFTER_SECONDS)
        return response
