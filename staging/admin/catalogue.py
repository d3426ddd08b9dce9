"""Stores (managed by the ``admin`` role) and the file catalogue (filled by the scan; whoever may
change stores may also set a file's own DTS metadata, nothing else of it)."""

import uuid
from pathlib import Path

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from staging.admin.base import ReadOnlyAdmin
from staging.errors import ServiceError
from staging.models import File, Store, TapeLibrary
from staging.services.deadlines import deadline_parse
from staging.services.stores import store_roots_validate


class StoreForm(forms.ModelForm):
    """The roots pass the same checks as ``store_create`` and are saved resolved, created."""

    class Meta:
        model = Store
        fields = [
            "slug",
            "description",
            "kind",
            "is_primary",
            "archive_root",
            "staging_root",
            "hard_link",
            "administrators",
            "simulated_latency_ms",
            "max_active",
            "free_space_low",
            "free_space_high",
            "default_deadline",
        ]

    def clean_default_deadline(self):
        deadline = self.cleaned_data.get("default_deadline")
        if deadline is not None:
            try:
                deadline_parse(int(deadline.total_seconds()), field="default deadline")
            except ServiceError as exc:
                raise forms.ValidationError(exc.detail) from exc
        return deadline

    def clean(self):
        cleaned = super().clean()
        archive, staging = cleaned.get("archive_root"), cleaned.get("staging_root")
        if archive and staging:
            try:
                archive, staging = store_roots_validate(archive_root=archive, staging_root=staging)
            except ServiceError as exc:
                self.add_error(exc.field, exc.detail)
            else:
                cleaned["archive_root"], cleaned["staging_root"] = str(archive), str(staging)
                self._create_roots(archive, staging)
        return cleaned

    def _create_roots(self, *roots: Path) -> None:
        for field, root in zip(["archive_root", "staging_root"], roots, strict=True):
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self.add_error(field, f"{root} cannot be created: {exc.strerror}")


class TapeLibraryInline(admin.StackedInline):
    """The simulated tape library of a posix-tape store and its recall scheduler."""

    model = TapeLibrary
    can_delete = True
    extra = 0
    max_num = 1
    verbose_name = "simulated tape library and recall scheduler"
    verbose_name_plural = "simulated tape library and recall scheduler"
    fieldsets = [
        (
            "Library (what a read costs; docs/tape.md)",
            {
                "fields": [
                    "drives",
                    "mount_seconds",
                    "unmount_seconds",
                    "locate_seconds_per_position",
                    "read_mb_per_second",
                ]
            },
        ),
        (
            "Recall scheduler (when a cartridge is mounted)",
            {"fields": ["scheduler", "min_files", "min_bytes", "max_wait"]},
        ),
    ]


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    form = StoreForm
    inlines = [TapeLibraryInline]
    list_display = [
        "slug",
        "kind",
        "is_primary",
        "archive_root",
        "staging_root",
        "hard_link",
        "max_active",
        "staging_full_since",
        "jobs_link",
    ]
    search_fields = ["slug", "description"]
    autocomplete_fields = ["administrators"]
    fieldsets = [
        (None, {"fields": ["slug", "description", "kind", "is_primary"]}),
        ("Roots", {"fields": ["archive_root", "staging_root", "hard_link"]}),
        ("Access", {"fields": ["administrators"]}),
        (
            "Dispatch",
            {
                "fields": [
                    "max_active",
                    "free_space_low",
                    "free_space_high",
                    "staging_full_since",
                    "default_deadline",
                ],
                "description": "How many of the store's sub-jobs workers may run at once, "
                "how much free space the staging area keeps (the rest wait in the database), "
                "and how long a request may take when it names no deadline (see "
                "docs/dispatch.md).",
            },
        ),
        (
            "DTS metadata",
            {
                "fields": ["credit", "sources"],
                "description": "What every file of the store carries in GET /dts/resources "
                "and /dts/search; a file's own metadata overrides it (see docs/dts.md).",
            },
        ),
        ("Testing", {"fields": ["simulated_latency_ms"], "classes": ["collapse"]}),
    ]

    readonly_fields = ["staging_full_since"]

    @admin.display(description="jobs")
    def jobs_link(self, store):
        url = reverse("admin:staging_job_changelist") + f"?store__id__exact={store.pk}"
        return format_html('<a href="{}">jobs on {}</a>', url, store.slug)


@admin.register(File)
class FileAdmin(ReadOnlyAdmin):
    list_display = ["id", "store", "path", "size", "mtime", "present"]
    list_filter = ["store", "present"]
    list_select_related = ["store"]
    # The (store, path) unique index serves this order; "store" would sort by slug via a join.
    ordering = ["store_id", "path"]
    search_fields = ["path"]
    search_help_text = "A file id, or a path (or the start of one)."
    fields = [
        "id",
        "store",
        "path",
        "size",
        "mtime",
        "media_type",
        "md5",
        "sha256",
        "adler32",
        "present",
        "last_seen_at",
        "tape_vid",
        "tape_position",
        "metadata",
    ]
    readonly_fields = [name for name in fields if name != "metadata"]

    def has_change_permission(self, request, obj=None):
        # Only the DTS metadata is editable (readonly_fields), by those who keep the stores'.
        return request.user.has_perm("staging.change_store")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term).hex), False
        except ValueError:
            return queryset.filter(path__startswith=term), False
