from django.contrib import admin
from django.urls import path, re_path

from staging.api import dts, files, health, tape

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.ReadinessView.as_view(), name="readyz"),
    path("dts/staging", dts.DtsStagingView.as_view(), name="dts-staging"),
    path("dts/resources", dts.DtsResourcesView.as_view(), name="dts-resources"),
    path("api/v1/files/", files.FileListView.as_view(), name="file-list"),
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
]
