from django.contrib import admin
from django.urls import path, re_path
from django.views.generic import TemplateView

from staging.api import (
    dmi,
    dts,
    durastore,
    events,
    files,
    health,
    jobs,
    metrics,
    schema,
    subjobs,
    tape,
    task_status,
    tasks,
    webhooks,
)

JOB = "api/v1/jobs/<str:job_id>"
DATA_PRODUCER_JOB = "dmi/v1/dataJob/<str:requestId>/dataProducerJob/<str:dataProducerJobId>"

urlpatterns = [
    # Where a newcomer lands: links to the docs, the admin, health and every API root.
    path("", TemplateView.as_view(template_name="landing.html"), name="landing"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.ReadinessView.as_view(), name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("dts/staging", dts.DtsStagingView.as_view(), name="dts-staging"),
    path("dts/resources", dts.DtsResourcesView.as_view(), name="dts-resources"),
    path("dts/search", dts.DtsSearchView.as_view(), name="dts-search"),
    path("dts/localuser/<str:orcid>", dts.DtsLocalUserView.as_view(), name="dts-localuser"),
    path("api/v1/files/", files.FileListView.as_view(), name="file-list"),
    path("api/v1/jobs/", jobs.JobListView.as_view(), name="job-list"),
    path(f"{JOB}/", jobs.JobDetailView.as_view(), name="job-detail"),
    path(f"{JOB}/items/", jobs.JobItemsView.as_view(), name="job-items"),
    path(f"{JOB}/result", jobs.JobResultView.as_view(), name="job-result"),
    path(f"{JOB}/cancel", jobs.JobCancelView.as_view(), name="job-cancel"),
    path(f"{JOB}/retry", jobs.JobRetryView.as_view(), name="job-retry"),
    path(f"{JOB}/events", events.JobEventsView.as_view(), name="job-events"),
    path(f"{JOB}/release", jobs.JobReleaseView.as_view(), name="job-release"),
    path(f"{JOB}/subjobs/", subjobs.JobSubJobsView.as_view(), name="job-subjobs"),
    path(
        f"{JOB}/subjobs/<str:subjob_id>/status",
        subjobs.SubJobStatusView.as_view(),
        name="subjob-status",
    ),
    path(
        f"{JOB}/subjobs/<str:subjob_id>/result",
        subjobs.SubJobResultView.as_view(),
        name="subjob-result",
    ),
    path(
        "api/v1/task_status/<str:job_id>/peek",
        task_status.TaskStatusPeekView.as_view(),
        name="task-status-peek",
    ),
    path(
        "api/v1/task_status/<str:job_id>",
        task_status.TaskStatusView.as_view(),
        name="task-status",
    ),
    path(f"{DATA_PRODUCER_JOB}/status", dmi.DmiSubJobStatusView.as_view(), name="dmi-status"),
    path(f"{DATA_PRODUCER_JOB}/result", dmi.DmiSubJobResultView.as_view(), name="dmi-result"),
    path("api/v1/webhooks/", webhooks.WebhookListView.as_view(), name="webhook-list"),
    path(
        "api/v1/webhooks/<str:webhook_id>/",
        webhooks.WebhookDetailView.as_view(),
        name="webhook-detail",
    ),
    path(
        "api/v1/webhooks/<str:webhook_id>/rotate",
        webhooks.WebhookRotateView.as_view(),
        name="webhook-rotate",
    ),
    path(
        "api/v1/webhooks/<str:webhook_id>/deliveries/",
        webhooks.WebhookDeliveriesView.as_view(),
        name="webhook-deliveries",
    ),
    path("api/schema/", schema.SchemaView.as_view(), name="api-schema"),
    path("api/docs/", schema.DocsView.as_view(url_name="api-schema"), name="api-docs"),
    # WLCG Tape REST API v1: every route with and without a trailing slash, as clients differ.
    re_path(
        r"^\.well-known/wlcg-tape-rest-api/?$", tape.WellKnownView.as_view(), name="tape-well-known"
    ),
    re_path(r"^tape/api/v1/stage/?$", tape.StageView.as_view(), name="tape-stage"),
    re_path(
        r"^tape/api/v1/stage/(?P<request_id>[^/]+)/?$",
        tape.StageRequestView.as_view(),
        name="tape-stage-request",
    ),
    re_path(
        r"^tape/api/v1/stage/(?P<request_id>[^/]+)/cancel/?$",
        tape.StageCancelView.as_view(),
        name="tape-stage-cancel",
    ),
    re_path(
        r"^tape/api/v1/release/(?P<request_id>[^/]+)/?$",
        tape.ReleaseView.as_view(),
        name="tape-release",
    ),
    re_path(
        r"^tape/api/v1/archiveinfo/?$", tape.ArchiveInfoView.as_view(), name="tape-archiveinfo"
    ),
    # Task catalogue. DuraStore spells its routes without a trailing slash; both forms are
    # routed, as clients differ. API v1 has its own, described in the OpenAPI schema.
    re_path(
        r"^durastore/task/?$", durastore.DuraStoreTaskListView.as_view(), name="durastore-tasks"
    ),
    re_path(
        r"^durastore/task/(?P<task_name>[^/]+)/?$",
        durastore.DuraStoreTaskView.as_view(),
        name="durastore-task",
    ),
    path("api/v1/tasks/", tasks.TaskListView.as_view(), name="task-list"),
    path("api/v1/tasks/<str:task_name>/", tasks.TaskPerformView.as_view(), name="task-perform"),
]

handler404 = "stagingsvc.exceptions.page_not_found"
handler500 = "stagingsvc.exceptions.server_error"
