"""Every write of the staging domain. Views and Celery tasks call these; nothing else writes
models."""
