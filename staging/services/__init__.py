"""Every write of the staging domain. Views and tasks call these; nothing else writes models."""
