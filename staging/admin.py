"""Staff views of stores, the catalogue and jobs. Read-mostly: state moves through services."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from staging.models import File, Item, Job, Pin, Store, SubJob


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["slug", "kind", "is_primary", "archive_root", "staging_root", "hard_link"]
    search_fields = ["slug", "description"]


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    list_display = ["id", "store", "path", "size", "mtime", "present"]
    list_filter = ["store", "present"]
    search_fields = ["=id", "path"]
    show_full_result_count = False
    readonly_fields = [f.name for f in File._meta.fields]


class SubJobInline(admin.TabularInline):
    model = SubJob
    extra = 0
    can_delete = False
    fields = [
        "sequence",
        "status",
        "worker",
        "attempts",
        "files_done",
        "files_total",
        "lease_expires_at",
        "celery_task_id",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "uuid",
        "task",
        "store",
        "owner",
        "status",
        "files_done",
        "files_total",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "task", "store", "source"]
    list_select_related = ["store", "owner"]
    search_fields = ["=uuid"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [SubJobInline]
    readonly_fields = ["items_link"] + [f.name for f in Job._meta.fields]

    @admin.display(description="Items")
    def items_link(self, job):
        url = reverse("admin:staging_item_changelist") + f"?job__id__exact={job.pk}"
        return format_html('<a href="{}">{} items</a>', url, job.files_total)


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["path", "job", "status", "size", "bytes_done", "attempts", "error"]
    list_filter = ["status"]
    list_select_related = ["job"]
    search_fields = ["path", "=file__id"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Item._meta.fields]


@admin.register(Pin)
class PinAdmin(admin.ModelAdmin):
    list_display = ["path", "store", "job", "expires_at", "released_at"]
    list_filter = ["store"]
    search_fields = ["path"]
    raw_id_fields = ["job"]
