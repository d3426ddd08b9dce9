"""Domain state of the staging service. No I/O here: services move state, selectors read it.

State machine (jobs, sub-jobs and items share the canonical vocabulary of API.md)::

    NOT_STARTED ──► RUNNING ──► FINISHED | FAILED | PARTIALLY_FAILED   (terminal)
         │             │
         └─────────────┴──► CANCELLING ──► CANCELLED                   (terminal)

Every transition, with its full diagram per row kind (hand-backs, the reaper, retries, the
roll-up's rules), is one compare-and-set in ``staging.services.transitions``, and nothing else
writes ``status``: duplicate deliveries, late workers and concurrent cancels cannot move a row
backwards. A sub-job's ``failures`` (not its ``attempts``) count towards MAX_ATTEMPTS.
"""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from staging.credit import validate_credit, validate_file_metadata, validate_sources
from staging.orcid import validate_orcid
from staging.space import validate_space


class JobStatus(models.TextChoices):
    NOT_STARTED = "NOT_STARTED", "Not started"
    RUNNING = "RUNNING", "Running"
    FINISHED = "FINISHED", "Finished"
    FAILED = "FAILED", "Failed"
    PARTIALLY_FAILED = "PARTIALLY_FAILED", "Partially failed"
    CANCELLING = "CANCELLING", "Cancelling"
    CANCELLED = "CANCELLED", "Cancelled"


TERMINAL_STATUSES = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.PARTIALLY_FAILED, JobStatus.CANCELLED}
)
ACTIVE_STATUSES = frozenset({JobStatus.NOT_STARTED, JobStatus.RUNNING, JobStatus.CANCELLING})
# Active and not being cancelled: the work is still wanted (dispatch, deadlines, repairs, the
# cancel and priority actions). A tuple in the state machine's order, so queries read the same.
PENDING_STATUSES = (JobStatus.NOT_STARTED, JobStatus.RUNNING)
DEFAULT_PRIORITY = 3


class StoreKind(models.TextChoices):
    """What a store's archive is made of; the task catalogue offers each kind its own tasks."""

    POSIX = "posix", "POSIX directory tree"
    # A POSIX tree whose files live on nearline media (a tape library behind a hierarchical
    # file system): reading one is a recall, so clients ask for content to be restored first.
    # Its per-item delay is the store's simulated_latency_ms when no real library is attached.
    POSIX_TAPE = "posix-tape", "POSIX tree on tape (content is restored before use)"


class Store(models.Model):
    """A storage provider (the ``storeID`` of the task catalogue) with its archive and staging
    roots. Exactly one store is primary."""

    slug = models.SlugField(
        "store id", max_length=64, unique=True, help_text="Public identifier (storeID)."
    )
    description = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=StoreKind.choices, default=StoreKind.POSIX)
    archive_root = models.CharField(
        max_length=1024, help_text="Absolute path of the tree files are staged from."
    )
    staging_root = models.CharField(
        max_length=1024, help_text="Absolute path staged copies are written to."
    )
    is_primary = models.BooleanField(
        default=False, help_text="The store used when a request names none."
    )
    hard_link = models.BooleanField(
        default=False,
        help_text="Stage by hard link when both roots share a filesystem (falls back to a copy).",
    )
    administrators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="administered_stores",
        help_text="Collection admins who may see and steer every job on this store.",
    )
    simulated_latency_ms = models.PositiveIntegerField(
        default=0,
        help_text="Extra delay per item, to imitate a tape library (benchmarks, demos); 0: none.",
    )
    max_active = models.PositiveIntegerField(
        "max active sub-jobs",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Sub-jobs of this store handed to workers at once (e.g. the tape library's "
        "drive count); the rest wait in the database. Blank: no limit. Applies at the next "
        "dispatch, without a restart.",
    )
    free_space_low = models.CharField(
        "free space low watermark",
        max_length=32,
        blank=True,
        validators=[validate_space],
        help_text="Below this much free space in the staging area (bytes such as 50GB, or a "
        "share such as 5%), the store's waiting sub-jobs are not dispatched. Blank: never.",
    )
    free_space_high = models.CharField(
        "free space high watermark",
        max_length=32,
        blank=True,
        validators=[validate_space],
        help_text="Dispatch resumes once this much is free again (blank: the low watermark).",
    )
    default_deadline = models.DurationField(
        null=True,
        blank=True,
        help_text="How long a staging request of this store may take when it names no deadline "
        '(e.g. 2:00:00, 1 00:00:00 or P1D): files not on disk by then fail with "deadline '
        'exceeded". Blank: no deadline. The DTS, which cannot send one, always gets this.',
    )
    staging_full_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set by the dispatcher while the staging area is below its low watermark.",
    )
    credit = models.JSONField(
        "credit metadata",
        default=dict,
        blank=True,
        validators=[validate_credit],
        help_text="KBase credit metadata every file of the store carries for the DTS (titles, "
        "contributors, dates, version, license, repository, ...); a file's own metadata "
        "overrides it field by field.",
    )
    sources = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_sources],
        help_text='Frictionless sources of the store\'s files: [{"title", "path", "email"}].',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_primary"], condition=Q(is_primary=True), name="one_primary_store"
            )
        ]

    def __str__(self) -> str:
        return self.slug


class File(models.Model):
    """A catalogue entry: one file of a store's archive, found by the scan.

    The id is derived from the store and the path, so a re-scan (or a rebuilt catalogue) gives a
    file the same id and clients can keep the ids they were given."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024, help_text="Path relative to the archive root.")
    size = models.BigIntegerField(help_text="Size in bytes at the last scan.")
    mtime = models.DateTimeField(help_text="Modification time at the last scan.")
    media_type = models.CharField(max_length=128, blank=True)
    md5 = models.CharField(max_length=32, blank=True, help_text="Hex MD5, when computed.")
    sha256 = models.CharField(max_length=64, blank=True, help_text="Hex SHA-256, when computed.")
    adler32 = models.CharField(max_length=8, blank=True, help_text="Hex Adler-32, when computed.")
    present = models.BooleanField(
        default=True, help_text="False once a scan no longer finds the file in the archive."
    )
    last_seen_at = models.DateTimeField(help_text="When a scan last found the file.")
    metadata = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_file_metadata],
        help_text="This file's own DTS metadata, over its store's: {\"credit\": {...}, "
        '"sources": [...]}.',
    )
    # Where a posix-tape store's file lives on tape: read by the scan from the file's extended
    # attributes (user.tape.vid, user.tape.position) or imported from a tape map (tapemap).
    tape_vid = models.CharField(
        "tape cartridge (VID)", max_length=64, blank=True, help_text="Blank: not known."
    )
    tape_position = models.BigIntegerField(
        null=True, blank=True, help_text="The file's position on its cartridge."
    )

    class Meta:
        ordering = ["store", "path"]
        constraints = [
            models.UniqueConstraint(fields=["store", "path"], name="unique_file_path_per_store")
        ]
        indexes = [
            # GET /api/v1/files/ pages in path order over every store: this index gives that
            # order without sorting the catalogue; the pattern index serves ?prefix= lookups.
            models.Index(fields=["path"], name="file_path"),
            models.Index(
                fields=["path"], name="file_path_prefix", opclasses=["varchar_pattern_ops"]
            ),
        ]

    def __str__(self) -> str:
        return f"{self.store_id}:{self.path}"

    @staticmethod
    def id_for(store_slug: str, path: str) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"stagingsvc:{store_slug}/{path}").hex


class UserProfile(models.Model):
    """What the service knows of a user beyond the account: the ORCID the KBase DTS federates
    them by (``GET /dts/localuser/{orcid}``). An ORCID belongs to one user at most."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staging_profile"
    )
    orcid = models.CharField(
        "ORCID",
        max_length=19,
        null=True,
        blank=True,
        unique=True,
        validators=[validate_orcid],
        error_messages={
            "unique": "This ORCID already belongs to another user: an ORCID identifies one "
            "person, so take it from that user first."
        },
        help_text="The user's ORCID iD, e.g. 0000-0002-1825-0097 (one user per ORCID).",
    )

    class Meta:
        verbose_name = "user profile"

    def __str__(self) -> str:
        return f"{self.user} ({self.orcid or 'no ORCID'})"

    def clean(self) -> None:
        # A blank form field means "no ORCID": NULL, which the unique constraint lets repeat.
        if self.orcid == "":
            self.orcid = None


class Job(models.Model):
    """One request to do work on files of a store (see the module docstring for its states)."""

    uuid = models.UUIDField(
        "job id", default=uuid.uuid4, unique=True, editable=False, help_text="Public job id."
    )
    task = models.CharField(max_length=64, default="stage", help_text="Catalogue task name.")
    store = models.ForeignKey(Store, on_delete=models.PROTECT, related_name="jobs")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="staging_jobs"
    )
    source = models.CharField(
        max_length=16, default="api", help_text="Which API dialect created the job."
    )
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.NOT_STARTED
    )
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0, help_text="Items finished so far.")
    files_failed = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True, help_text="Summary of the outcome.")
    result_file = models.CharField(
        max_length=255,
        blank=True,
        help_text="Results too large for a row (a scan's file list): a file under RESULTS_ROOT, "
        "deleted with the job.",
    )
    error = models.TextField(blank=True)
    lifetime = models.DurationField(help_text="How long staged copies stay pinned.")
    waiting = models.CharField(
        max_length=64,
        blank=True,
        help_text="Why the job's sub-jobs wait, when something other than their turn holds them "
        "(staging area full).",
    )
    priority = models.PositiveSmallIntegerField(
        default=DEFAULT_PRIORITY,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="1 (lowest) to 5 (highest): the dispatcher hands out the sub-jobs of higher "
        "priorities first, and shares each priority fairly between owners.",
    )
    deadline_at = models.DateTimeField(
        "deadline",
        null=True,
        blank=True,
        help_text="When the job gives up: its files not on disk by then end FAILED with "
        "\"deadline exceeded\" (the request's deadline, else its store's default, counted from "
        "its creation). Blank: none.",
    )
    idempotency_key = models.CharField(max_length=128, blank=True)
    request_hash = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the request body that created the job, to tell a repeated "
        "Idempotency-Key with the same body (same job) from one with another body (refused).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who asked for the cancel and when (the first request; later ones change nothing). Null
    # for jobs no one cancelled, and for cancels a tape client made by request id.
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who asked for the job to be cancelled.",
    )
    cancelled_at = models.DateTimeField(
        null=True, blank=True, help_text="When the cancel was asked for."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="job_status_created"),
            models.Index(fields=["owner", "created_at"], name="job_owner_created"),
            # A user's work in flight, counted on every submission against its limits.
            models.Index(
                fields=["owner", "task"],
                name="job_owner_active",
                condition=Q(status__in=sorted(ACTIVE_STATUSES)),
            ),
            # The admin's job list filters (newest first) and its dashboard's per-hour counts.
            models.Index(fields=["store", "created_at"], name="job_store_created"),
            models.Index(fields=["task", "created_at"], name="job_task_created"),
            models.Index(fields=["finished_at"], name="job_finished"),
            # The deadline pass on beat looks only at active jobs that have a deadline.
            models.Index(
                fields=["deadline_at"],
                name="job_deadline_active",
                condition=Q(
                    deadline_at__isnull=False,
                    # A list, as migration 0014 recorded it.
                    status__in=list(PENDING_STATUSES),
                ),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="unique_idempotency_key_per_owner",
            )
        ]

    def __str__(self) -> str:
        return str(self.uuid)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class SubJob(models.Model):
    """A slice of a job's items run as one Celery task (the seed's "data producer job").

    While RUNNING it holds a lease (``worker``, ``lease_expires_at``) that its heartbeat renews;
    a second delivery of the task while the lease lives does nothing."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="subjobs")
    sequence = models.PositiveIntegerField(help_text="Position within the job, from 1.")
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.NOT_STARTED
    )
    celery_task_id = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="Task id of the latest dispatch."
    )
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker took it.")
    failures = models.PositiveIntegerField(
        default=0,
        help_text="Times a run ended in a real failure (its worker lost, an unexpected error); "
        "hand-backs at a warm shutdown do not count. MAX_ATTEMPTS of them fail the sub-job.",
    )
    worker = models.CharField(max_length=255, blank=True, help_text="Worker holding the lease.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    bytes_per_second = models.FloatField(
        default=0, help_text="Copy rate over the last progress interval (0 when not running)."
    )
    error = models.TextField(blank=True)
    # Set on the sub-jobs the recall scheduler builds for a tape library (staging.services.
    # recall): the cartridge all of its items are on; blank for every other sub-job.
    tape_vid = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["job", "sequence"], name="unique_subjob_sequence")
        ]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="subjob_lease"),
            # The dispatcher counts dispatched sub-jobs and walks the undispatched ones in age
            # order (staging.services.dispatch).
            models.Index(fields=["status", "dispatched_at", "id"], name="subjob_dispatch"),
            # Bytes staged per hour (admin dashboard).
            models.Index(fields=["finished_at"], name="subjob_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.sequence}"


class Item(models.Model):
    """One unit of a job's work and how far it got: a file for most tasks (stage, checksum,
    release); for a scan, the directory it walks (``path`` is the prefix, empty for the whole
    store). A job of a task without items (noop) has none: its one sub-job is the work."""

    # No single-column indexes on job and subjob: item_job_status_id and item_subjob_status
    # lead with them, and every index is one more write per file of a million-file request.
    # No foreign-key constraint on job either: its check at commit, once per item, was a sixth
    # of a million-file request's time and guards nothing. Items are written only in the
    # transaction that creates their job, their job never changes, and a job goes only through
    # the ORM (the retention purge deletes its items first). The sub-job keeps its constraint:
    # items move between sub-jobs (a tape recall's regrouping) while sub-jobs are deleted.
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="items", db_index=False, db_constraint=False
    )
    subjob = models.ForeignKey(
        SubJob,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="items",
        db_index=False,
    )
    # No foreign-key constraint in the database: its check at commit locks the catalogue row
    # of every file of a request (a million row locks for the largest) to guard against a
    # deletion that never happens outside the ORM (the catalogue marks vanished files, and the
    # ORM still sets this to NULL when an entry is deleted). The item keeps its own path and
    # size; this link says which catalogue entry they came from. No index: the admin's search
    # by catalogue id goes through the file's path (item_path).
    file = models.ForeignKey(
        File,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_constraint=False,
        db_index=False,
    )
    path = models.CharField(max_length=1024, help_text="Path relative to the store's roots.")
    size = models.BigIntegerField(default=0, help_text="Expected size in bytes.")
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.NOT_STARTED
    )
    bytes_done = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    result = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the task found for this item (a checksum, pins released, a scan summary).",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]
        indexes = [
            # A job's items in one state, in id order (the cursor pages of its items): an index
            # scan that stops at the page, not a sort of a million-file job's items.
            models.Index(fields=["job", "status", "id"], name="item_job_status_id"),
            models.Index(fields=["subjob", "status"], name="item_subjob_status"),
            # Admin search of jobs by file path or prefix (LIKE 'prefix%' on PostgreSQL), and by
            # catalogue id through the file's path (selectors_admin.items_of_file).
            models.Index(fields=["path"], name="item_path", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return self.path


class Pin(models.Model):
    """A job's hold on a staged copy. A staged file stays while any pin on it lives; the
    sweeper deletes copies whose pins have all been released or have expired."""

    # Indexed by unique_pin_per_job_path and pin_store_path, which lead with them. Neither keeps
    # a foreign-key constraint: one check per pin at commit of a million-file request would
    # guard nothing. Pins are written only in the transaction that creates their job or, for a
    # retry, after it reopened the job (a row lock the purge waits for, and a reopened job is no
    # longer purgeable); their job never changes; jobs and stores go only through the ORM,
    # which deletes their pins. The store is always the job's.
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="pins", db_index=False, db_constraint=False
    )
    store = models.ForeignKey(
        Store, on_delete=models.CASCADE, related_name="pins", db_index=False, db_constraint=False
    )
    path = models.CharField(max_length=1024)
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    source_mtime = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name="archive file's mtime",
        help_text="The mtime of the archive file the staged copy was made from, recorded when "
        "the job's copy was staged (the copy carries the same mtime; a copy whose mtime or "
        "size differs from the archive file's is staged again).",
    )
    source_size = models.BigIntegerField(
        null=True,
        blank=True,
        verbose_name="archive file's size",
        help_text="The size in bytes of the archive file the staged copy was made from.",
    )
    mismatch_found_at = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name="checksum mismatch found",
        help_text="When a verify found that the staged copy's checksum differs from the "
        "catalogue's while other jobs pinned the copy: it was kept for them, no longer counts "
        "as staged (the next job staging the path copies it again), and is cleared once a "
        "verify of the path passes.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "path"], name="unique_pin_per_job_path")
        ]
        indexes = [models.Index(fields=["store", "path"], name="pin_store_path")]

    def __str__(self) -> str:
        return f"{self.store_id}:{self.path} for {self.job_id}"


# Defined in their own module; imported here so that Django registers them with the app.
from staging.models_limits import AccountLimits  # noqa: E402, F401
from staging.models_tape import TapeDrive, TapeLibrary  # noqa: E402, F401
from staging.models_webhooks import (  # noqa: E402, F401
    JobCallback,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
