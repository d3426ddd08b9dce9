"""The service's URLs plus the baseline views; served only by benchmark runs."""

from django.urls import path

from bench import views
from stagingsvc.urls import urlpatterns as service_urlpatterns

urlpatterns = [
    path("bench/baseline/status", views.baseline_status, name="bench-baseline-status"),
    path("bench/baseline/submit", views.baseline_submit, name="bench-baseline-submit"),
    *service_urlpatterns,
]
