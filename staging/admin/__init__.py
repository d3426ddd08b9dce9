"""The staff admin: jobs (list, page, actions), their sub-jobs, items and pins, the catalogue,
stores, users and API tokens. The dashboard and the site itself are in staging.admin_site."""

from staging.admin import accounts, catalogue, jobs, profiles, webhooks, work

__all__ = ["accounts", "catalogue", "jobs", "profiles", "webhooks", "work"]
