"""The public OpenAPI schema and its docs UI (Swagger UI, assets served by us from
drf-spectacular-sidecar: no internet needed)."""

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from staging.api.permissions import RolePolicy


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema (YAML; JSON with ?format=json)."""

    role_policy = "docs"
    permission_classes = [RolePolicy]


class DocsView(SpectacularSwaggerView):
    """Swagger UI over the schema, with its assets served from our static files."""

    role_policy = "docs"
    permission_classes = [RolePolicy]
