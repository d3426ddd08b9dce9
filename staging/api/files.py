"""The file catalogue, so clients can find ids without the command line."""

from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination

from staging.api.permissions import RolePolicy
from staging.models import File
from staging.selectors import files_list, store_get


class FileCursorPagination(CursorPagination):
    ordering = "path"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class FileListView(ListAPIView):
    """Catalogue entries: ``?path=`` exact, ``?prefix=`` by leading path, ``?store=`` a store."""

    role_policy = "catalogue"
    permission_classes = [RolePolicy]
    pagination_class = FileCursorPagination

    class OutputSerializer(serializers.ModelSerializer):
        store = serializers.SlugRelatedField(
            slug_field="slug", read_only=True, help_text="The store (storeID)."
        )

        class Meta:
            model = File
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
            ]
            extra_kwargs = {
                "id": {"help_text": "Stable catalogue id (what the DTS asks for)."},
                "media_type": {"help_text": "IANA media type, guessed from the name."},
            }

    serializer_class = OutputSerializer

    def get_queryset(self):
        params = self.request.query_params
        path, prefix = params.get("path", ""), params.get("prefix", "")
        store = store_get(slug=params["store"]) if params.get("store") else None
        return files_list(store=store, path=path, prefix=prefix)
