"""Celery tasks. Each is thin: take ids, call a service, return a small JSON-able summary."""
