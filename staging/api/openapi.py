"""How drf-spectacular describes our API: component names, the bearer scheme, the problem
document every error is (text for DuraStore), the routes as each dialect spells them, and the
health probes. (The schema and docs views are in staging.api.schema.)"""

from http import HTTPStatus

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_basic_type, build_bearer_security_scheme_object
from drf_spectacular.types import OpenApiTypes

PROBLEM_MEDIA_TYPE = "application/problem+json"


class StagingAutoSchema(AutoSchema):
    """Names a view's nested serializers after the view (``JobListView.InputSerializer`` →
    ``JobListInput``), so the many ``InputSerializer`` classes stay distinct components."""

    def get_serializer_name(self, serializer, direction):
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if not outer:
            return super().get_serializer_name(serializer, direction)
        outer = outer.removesuffix("View")
        if inner == "OutputSerializer":  # FileListView.OutputSerializer → File
            return outer.removesuffix("List")
        return outer + inner

    def get_tags(self):
        path = self.path
        for prefix, tag in TAGS:
            if path.startswith(prefix):
                return [tag]
        return super().get_tags()


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "staging.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer"
        )


class IsoDurationInput(OpenApiSerializerFieldExtension):
    """DRF's DurationField reads ISO 8601 durations (``P7D``), the spelling our documents and
    clients use; spectacular calls it a plain string."""

    target_class = "rest_framework.fields.DurationField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        return build_basic_type(OpenApiTypes.DURATION)


TAGS = (
    ("/api/v1/jobs/{job_id}/subjobs", "sub-jobs"),
    ("/api/v1/jobs", "jobs"),
    ("/api/v1/task_status", "task status"),
    ("/api/v1/files", "catalogue"),
    ("/api/v1/tasks", "task catalogue"),
    ("/dmi/", "data jobs (O-RAN data producer jobs)"),
    ("/dts/", "DTS provider contract"),
    ("/durastore/", "DuraStore tasks (DuraCloud)"),
    ("/tape/", "WLCG Tape REST API"),
    ("/.well-known/", "WLCG Tape REST API"),
)
PAGE_MEMBERS = {
    "next": "URI of the next page, or null on the last one.",
    "previous": "URI of the previous page, or null on the first one.",
    "results": "The entries of this page.",
}
# Arrays whose items may be null, by operation id (spectacular cannot say so from a serializer):
# /dts/resources answers null in the place of an unknown id.
NULLABLE_ITEMS = {"dts_resources": "200"}
FORMAT_PARAMETER = "The response format, instead of an Accept header: json or csv."

# Dialects whose specifications spell their routes without a trailing slash (both forms are
# routed, as clients differ): the schema shows them as their specifications do.
NO_TRAILING_SLASH = ("/tape/", "/.well-known/", "/durastore/")
# DuraStore answers errors in text/plain with the message alone, as DuraCloud does.
PLAIN_TEXT_ERRORS = ("/durastore/",)


def spell_routes_as_specified(endpoints):
    """Preprocessing hook: the tape and DuraStore routes without their optional slash."""
    return [
        (path.rstrip("/") if path.startswith(NO_TRAILING_SLASH) else path, *rest)
        for path, *rest in endpoints
    ]


# The probes are plain Django views (no serializer to describe them): written out here.
HEALTH_PATHS = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "description": "Liveness: the web process answers. Public.",
            "tags": ["health"],
            "responses": {
                "200": {
                    "description": "The process is up.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "status": {
                                        "type": "string",
                                        "enum": ["ok"],
                                        "description": "Always ok.",
                                    }
                                },
                                "required": ["status"],
                            }
                        }
                    },
                }
            },
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "description": "Readiness: the database and the broker answer (JSON with Accept: "
            "application/json, else a page). Public.",
            "tags": ["health"],
            "responses": {
                code: {
                    "description": description,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "description": "Each check by name, with OK or what failed.",
                                "additionalProperties": {"type": "string"},
                            }
                        },
                        "text/html": {"schema": {"type": "string"}},
                    },
                }
                for code, description in (
                    ("200", "Database and broker answer."),
                    ("503", "One of them does not; the body names it."),
                )
            },
        }
    },
}


# Errors any authenticated operation can answer, whatever it does.
COMMON_ERRORS = {
    "401": "No valid bearer token (the response carries WWW-Authenticate: Bearer).",
    "403": "The caller's role does not allow this call.",
    "406": "The Accept header asks for a format this call does not offer.",
    "429": "Too many requests from this user; Retry-After says when to come back.",
    "500": "An unexpected error; the response says nothing about internals.",
}
POST_ERRORS = {
    "400": "The request is malformed: detail and errors say which field and why.",
    "413": "The request body is over the size limit.",
    "415": "The body is not JSON.",
}
QUERY_ERROR = "A query parameter is missing or malformed: detail and errors say which."
# Any call: stagingsvc.middleware.RejectNulBytesMiddleware answers it before the view.
NUL_ERROR = "A NUL byte in the URL (path or a query parameter): detail says where."
CURSOR_ERROR = "The cursor is not one this listing gave out."
RETRY_AFTER = {
    "schema": {"type": "integer"},
    "description": "Seconds to wait before asking again.",
}


def add_problem_responses(result, generator, request, public):
    """Postprocessing hook: every operation documents the problem responses it can give, each
    as application/problem+json, plus Retry-After on 429."""
    result["components"]["schemas"].setdefault(
        "Problem",
        {
            "type": "object",
            "description": "An RFC 9457 problem document; some carry more members "
            "(e.g. unknown_ids).",
            "properties": {
                "type": {"type": "string", "description": "A URI naming the problem type."},
                "title": {"type": "string", "description": "Short summary of the problem type."},
                "status": {"type": "integer", "description": "The HTTP status code."},
                "detail": {"type": "string", "description": "What went wrong, for a person."},
                "instance": {"type": "string", "description": "The path of the request."},
                "field": {"type": "string", "description": "The offending field, when one is."},
                "errors": {
                    "type": "array",
                    "description": "Every invalid field with its message.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string", "description": "The offending field."},
                            "message": {"type": "string", "description": "What is wrong."},
                        },
                    },
                },
            },
            "required": ["type", "title", "status", "detail"],
        },
    )
    for name, component in result["components"]["schemas"].items():
        if name.startswith("Paginated"):
            for member, description in PAGE_MEMBERS.items():
                component["properties"][member].setdefault("description", description)
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    plain_text = {"text/plain": {"schema": {"type": "string", "description": "The message."}}}
    for path, path_item in result["paths"].items():
        for method, operation in path_item.items():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "format" and parameter["in"] == "query":
                    parameter.setdefault("description", FORMAT_PARAMETER)
            responses = operation.setdefault("responses", {})
            if operation.get("operationId") in NULLABLE_ITEMS:
                content = responses[NULLABLE_ITEMS[operation["operationId"]]]["content"]
                array = content["application/json"]["schema"]
                array["items"] = {"allOf": [array["items"]], "nullable": True}
            errors = dict(COMMON_ERRORS)
            if method in ("post", "put", "patch"):
                errors.update(POST_ERRORS)
            if not operation.get("security") or operation["security"] == [{}]:
                errors.pop("401")
                errors.pop("403")
            parameters = operation.get("parameters", [])
            if any(p["in"] == "query" and p["name"] != "format" for p in parameters):
                errors.setdefault("400", QUERY_ERROR)
            if any(p["in"] == "query" and p["name"] == "cursor" for p in parameters):
                errors.setdefault("404", CURSOR_ERROR)
            errors.setdefault("400", NUL_ERROR)
            for code, description in errors.items():
                responses.setdefault(code, {"description": description})
            error_content = plain_text if path.startswith(PLAIN_TEXT_ERRORS) else problem
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    response["content"] = error_content
            if "429" in responses:
                responses["429"].setdefault("headers", {})["Retry-After"] = RETRY_AFTER
            for code, response in responses.items():
                if not response.get("description"):
                    response["description"] = HTTPStatus(int(code)).phrase
    result["paths"].update(HEALTH_PATHS)
    return result
