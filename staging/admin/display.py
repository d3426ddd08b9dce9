"""How jobs look in the admin: status badges, progress bars, durations. Markup only carries CSS
classes (staging/static/staging/admin.css); bar lengths are SVG geometry, not styles."""

from datetime import datetime, timedelta

from django.template.defaultfilters import filesizeformat, pluralize
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from staging.models import JobStatus

FAILED_STATUSES = {JobStatus.FAILED, JobStatus.PARTIALLY_FAILED}


def status_class(status: str) -> str:
    return "status-" + status.lower().replace("_", "-")


def status_badge(status: str) -> SafeString:
    label = JobStatus(status).label if status in JobStatus.values else status
    return format_html('<span class="badge {}">{}</span>', status_class(status), label)


def _share(part: int, whole: int) -> float:
    return round(100 * min(max(part, 0), whole) / whole, 2) if whole > 0 else 0.0


def progress_bar(
    *, files_done: int, files_failed: int, files_total: int, bytes_done: int, bytes_total: int
) -> SafeString:
    """Two bars in one small SVG: files (finished in green, failed in red) above bytes."""
    done = _share(files_done, files_total)
    failed = min(_share(files_failed, files_total), 100 - done)
    bytes_share = _share(bytes_done, bytes_total)
    files = f"{files_done} / {files_total} file{pluralize(files_total)}" + (
        f", {files_failed} failed" if files_failed else ""
    )
    size = f"{filesizeformat(bytes_done)} / {filesizeformat(bytes_total)}"
    summary = f"{files} · {size}"
    return format_html(
        '<span class="progress"><svg class="progress-bars" viewBox="0 0 100 10" '
        'preserveAspectRatio="none" role="img" aria-label="{summary}"><title>{summary}</title>'
        '<rect class="track" width="100" height="6"/>'
        '<rect class="files-done" width="{done}" height="6"/>'
        '<rect class="files-failed" x="{done}" width="{failed}" height="6"/>'
        '<rect class="track" y="7" width="100" height="3"/>'
        '<rect class="bytes-done" y="7" width="{bytes_share}" height="3"/>'
        # Files and bytes on lines of their own: a narrow column in the job list.
        '</svg><span class="progress-text">{files}</span>'
        '<span class="progress-text">{size}</span></span>',
        summary=summary,
        files=files,
        size=size,
        done=done,
        failed=failed,
        bytes_share=bytes_share,
    )


def job_progress_bar(job) -> SafeString:
    return progress_bar(
        files_done=job.files_done,
        files_failed=job.files_failed,
        files_total=job.files_total,
        bytes_done=job.bytes_done,
        bytes_total=job.bytes_total,
    )


def duration_text(delta: timedelta | None) -> str:
    """A compact duration: "42 s", "5 min 3 s", "2 h 5 min", "3 d 4 h"."""
    if delta is None:
        return "—"
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def job_duration(job, now: datetime | None = None) -> str:
    """How long the job ran (or has been running), or how long it has waited for a worker."""
    now = now or timezone.now()
    if job.started_at is None:
        if job.finished_at is not None:
            return "—"
        return f"queued {duration_text(now - job.created_at)}"
    return duration_text((job.finished_at or now) - job.started_at)


def worker_host(worker: str) -> str:
    """The host of a lease holder named ``node@host:pid`` ("" when no worker holds it)."""
    node = worker.rpartition(":")[0] or worker
    return node.partition("@")[2] or node
