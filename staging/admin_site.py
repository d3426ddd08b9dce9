"""The admin site staff use: Django's admin plus the staging dashboard at ``/admin/dashboard/``.

Kept apart from the ``staging.admin`` package on purpose: Django imports this module while it
loads apps, before any model exists, and the package registers model admins when imported.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import path


class StagingAdminSite(admin.AdminSite):
    site_header = "stagingsvc administration"
    site_title = "stagingsvc admin"
    index_title = "Staging service"
    # The service has no public site to link to.
    site_url = None

    def get_app_list(self, request, app_label=None):
        # The service's own models first: they are what staff come for; Celery's, Knox's and
        # the periodic tasks' tables follow in Django's alphabetical order.
        apps = super().get_app_list(request, app_label)
        return sorted(apps, key=lambda app: app["app_label"] != "staging")

    def get_urls(self):
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        from staging.admin.dashboard import dashboard

        return dashboard(request, site=self)


class StagingAdminConfig(AdminConfig):
    default_site = "staging.admin_site.StagingAdminSite"
