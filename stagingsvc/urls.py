from django.contrib import admin
from django.urls import path

from staging.api import dts, files, health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.ReadinessView.as_view(), name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("dts/staging", dts.DtsStagingView.as_view(), name="dts-staging"),
    path("dts/resources", dts.DtsResourcesView.as_view(), name="dts-resources"),
    path("api/v1/files/", files.FileListView.as_view(), name="file-list"),
]
