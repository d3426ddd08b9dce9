"""Baseline views: the least work a request of each kind can do on the same stack (gunicorn,
Django, middleware, PostgreSQL). Our endpoints are measured against them in the same run."""

import json

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from staging.models import File, Item, Job


@require_GET
def baseline_status(request: HttpRequest) -> JsonResponse:
    """The ceiling of a status poll: no authentication, one primary-key lookup, JSON out."""
    status = Job.objects.filter(pk=request.GET["id"]).values_list("status", flat=True).first()
    if status is None:
        return JsonResponse({"detail": "not found"}, status=404)
    return JsonResponse({"status": status})


@csrf_exempt
@require_POST
@transaction.atomic
def baseline_submit(request: HttpRequest) -> JsonResponse:
    """The ceiling of accepting a staging request: parse the ids, look them up in one query,
    write the job row and one item row per file in one transaction. No authentication, no
    sub-jobs, no pins, no broker."""
    ids = list(dict.fromkeys(json.loads(request.body)["ids"]))
    files = list(File.objects.filter(pk__in=ids).values_list("pk", "store_id", "path", "size"))
    if len(files) != len(ids):
        return JsonResponse({"detail": "unknown ids"}, status=404)
    job = Job.objects.create(
        store_id=files[0][1],
        owner_id=int(request.GET["owner"]),
        source="bench-baseline",
        lifetime=settings.STAGING["DEFAULT_LIFETIME"],
        files_total=len(files),
        bytes_total=sum(size for *_, size in files),
    )
    Item.objects.bulk_create(
        (Item(job=job, file_id=pk, path=path, size=size) for pk, _, path, size in files),
        batch_size=1000,
    )
    return JsonResponse({"request_id": str(job.uuid)}, status=201)
