"""The public OpenAPI schema and its docs UI (Swagger UI, assets served by us from
drf-spectacular-sidecar: no internet needed)."""

from django.utils.translation import get_language
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.response import Response

from staging.api.permissions import RolePolicy


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema (YAML; JSON with ?format=json). It is public and comes from the
    code alone, and generating it walks every view: each process builds it once (per version,
    language and format asked for) and serves that copy afterwards."""

    role_policy = "docs"
    permission_classes = [RolePolicy]
    _built: dict[tuple, tuple] = {}

    def _get_schema_response(self, request):
        key = (
            self.api_version or request.version,
            request.GET.get("version"),
            get_language(),
            self.perform_content_negotiation(request, force=True)[0].format,
        )
        if key not in self._built:
            response = super()._get_schema_response(request)
            self._built[key] = (response.data, dict(response.headers))
        data, headers = self._built[key]
        return Response(data=data, headers=headers)


class DocsView(SpectacularSwaggerView):
    """Swagger UI over the schema, with its assets served from our static files."""

    role_policy = "docs"
    permission_classes = [RolePolicy]
