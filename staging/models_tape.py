"""A simulated tape library behind a ``posix-tape`` store, and its drives.

The library models what costs time on tape (staging.tape_library): a drive is held by one worker
at a time (a row with a lease, so a crashed worker's drive comes back), mounts a cartridge if it
is not the one mounted (unmounting the previous), locates from its head position to the file's
and reads it. The recall scheduler (staging.services.recall) reads the same settings to decide
which cartridges to send to the drives."""

from datetime import timedelta

from django.core.validators import MinValueValidator
from django.db import models


class TapeLibrary(models.Model):
    store = models.OneToOneField(
        "staging.Store", on_delete=models.CASCADE, related_name="tape_library"
    )
    drives = models.PositiveIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="Tape drives: at most this many cartridges are read at once.",
    )
    mount_seconds = models.FloatField(
        default=60.0, validators=[MinValueValidator(0)], help_text="Time to mount a cartridge."
    )
    unmount_seconds = models.FloatField(
        default=20.0,
        validators=[MinValueValidator(0)],
        help_text="Time to unmount the cartridge a drive holds before it mounts another.",
    )
    locate_seconds_per_position = models.FloatField(
        "locate seconds per position",
        default=0.005,
        validators=[MinValueValidator(0)],
        help_text="Time to move the head by one position along a cartridge.",
    )
    read_mb_per_second = models.FloatField(
        "read MB/s",
        default=300.0,
        validators=[MinValueValidator(0.001)],
        help_text="Read rate of a drive once positioned (MB of 10^6 bytes per second).",
    )
    scheduler = models.BooleanField(
        "recall scheduler",
        default=True,
        help_text="Group waiting files by cartridge and read each cartridge in position order "
        "(off: sub-jobs are dispatched in request order, as for any store).",
    )
    min_files = models.PositiveIntegerField(
        default=1,
        help_text="A cartridge is mounted once this many of its files wait (or min bytes, or "
        "max wait).",
    )
    min_bytes = models.BigIntegerField(
        default=0,
        validators=[MinValueValidator(0)],
        help_text="… or once this many bytes of it wait (0: not used).",
    )
    max_wait = models.DurationField(
        default=timedelta(minutes=5),
        help_text="… or once its oldest waiting file has waited this long.",
    )

    class Meta:
        verbose_name = "tape library"
        verbose_name_plural = "tape libraries"

    def __str__(self) -> str:
        return f"tape library of {self.store}"


class TapeDrive(models.Model):
    library = models.ForeignKey(TapeLibrary, on_delete=models.CASCADE, related_name="drive_rows")
    number = models.PositiveIntegerField()
    mounted_vid = models.CharField(max_length=80, blank=True)
    head_position = models.BigIntegerField(default=0)
    # Who holds the drive, until when (renewed at every read): a crashed holder's drive is free
    # again once the lease expires.
    holder = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The cartridge the holder took the drive for (mounted at its first read).
    holder_vid = models.CharField(max_length=80, blank=True)
    reading_path = models.CharField(max_length=1024, blank=True)
    # Counters since the drive was created (/metrics).
    mounts = models.PositiveIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    files_read = models.PositiveIntegerField(default=0)
    seek_seconds = models.FloatField(default=0)
    mount_seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["library", "number"]
        constraints = [
            models.UniqueConstraint(fields=["library", "number"], name="unique_tape_drive")
        ]

    def __str__(self) -> str:
        return f"drive {self.number} of {self.library.store}"
