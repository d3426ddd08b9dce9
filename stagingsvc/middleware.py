"""Refuse work the broker could not carry before any of it is written."""

from django.urls import Resolver404, resolve

from staging.dependencies import BROKER, BrokerUnavailable, broker_ensure_reachable
from stagingsvc.exceptions import unavailable_response

# The routes whose POST creates sub-jobs for the broker to hand out: new jobs in every dialect,
# and retries. Cancel, release and delete change only rows, so they go on working.
PUBLISHING_ROUTES = frozenset(
    {
        "dts-staging",
        "job-list",
        "job-retry",
        "tape-stage",
        "durastore-task",
        "task-perform",
    }
)


class BrokerRequiredMiddleware:
    """A submission while the broker is away answers 503 and creates no job, so a client that
    tries again later does not leave a twin behind. (Should the broker go away after this check
    and before the publish, the job is kept and the reconciler publishes it once the broker is
    back: the database, not the broker, is the record of what must run.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and _route(request.path_info) in PUBLISHING_ROUTES:
            try:
                broker_ensure_reachable()
            except BrokerUnavailable:
                return unavailable_response(request, BROKER)
        return self.get_response(request)


def _route(path: str) -> str | None:
    try:
        return resolve(path).url_name
    except Resolver404:
        return None
