"""The OpenAPI 3 schema generated from the code, and the docs UI that needs no internet."""

import re

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

EVERY_PATH = {
    "/api/v1/files/",
    "/api/v1/jobs/",
    "/api/v1/jobs/{job_id}/",
    "/api/v1/jobs/{job_id}/items/",
    "/api/v1/jobs/{job_id}/result",
    "/api/v1/jobs/{job_id}/cancel",
    "/api/v1/jobs/{job_id}/retry",
    "/api/v1/jobs/{job_id}/release",
    "/api/v1/jobs/{job_id}/subjobs/",
    "/api/v1/jobs/{job_id}/subjobs/{subjob_id}/status",
    "/api/v1/jobs/{job_id}/subjobs/{subjob_id}/result",
    "/api/v1/task_status/{job_id}",
    "/api/v1/task_status/{job_id}/peek",
    "/dmi/v1/dataJob/{requestId}/dataProducerJob/{dataProducerJobId}/status",
    "/dmi/v1/dataJob/{requestId}/dataProducerJob/{dataProducerJobId}/result",
    "/dts/staging",
    "/dts/resources",
    "/dts/search",
    "/dts/localuser/{orcid}",
    "/durastore/task",
    "/durastore/task/{task_name}",
    "/.well-known/wlcg-tape-rest-api",
    "/tape/api/v1/stage",
    "/tape/api/v1/stage/{request_id}",
    "/tape/api/v1/stage/{request_id}/cancel",
    "/tape/api/v1/release/{request_id}",
    "/tape/api/v1/archiveinfo",
    "/healthz",
    "/readyz",
}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_the_schema_is_served_without_a_token_as_yaml_and_json(client):
    as_yaml = client.get("/api/schema/")
    as_json = client.get("/api/schema/?format=json")
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert yaml.safe_load(as_yaml.content) == as_json.json()


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_the_schema_generates_without_a_single_warning(tmp_path):
    # --fail-on-warn turns every generator warning (unresolvable field, name clash) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))


def test_the_schema_describes_every_endpoint(schema):
    assert set(schema["paths"]) >= EVERY_PATH


def _undescribed(node, where: str):
    if not isinstance(node, dict) or "$ref" in node:
        return
    for name, prop in (node.get("properties") or {}).items():
        if not prop.get("description"):
            yield f"{where}.{name}"
        yield from _undescribed(prop, f"{where}.{name}")
    if "items" in node:
        yield from _undescribed(node["items"], f"{where}[]")
    for key in ("allOf", "oneOf", "anyOf"):
        for position, sub in enumerate(node.get(key, [])):
            yield from _undescribed(sub, f"{where}.{key}[{position}]")


def test_every_field_parameter_and_operation_has_a_description(schema):
    missing = []
    for name, component in schema["components"]["schemas"].items():
        missing += _undescribed(component, name)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            if not operation.get("description"):
                missing.append(where)
            missing += [
                f"{where} parameter {p['name']}"
                for p in operation.get("parameters", [])
                if not p.get("description")
            ]
            missing += [
                f"{where} response {code}"
                for code, response in operation["responses"].items()
                if not response.get("description")
            ]
    assert missing == []


def test_every_error_response_is_a_problem_document(schema):
    for path, item in schema["paths"].items():
        if path == "/readyz":
            continue  # a probe: its 503 is the health check's own report
        # DuraStore's errors are the message in text, as DuraCloud's are (API.md).
        problem = "text/plain" if path.startswith("/durastore/") else "application/problem+json"
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    assert list(response["content"]) == [problem], (
                        method,
                        path,
                        code,
                    )
            if operation.get("security"):
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_calls_are_secured_by_bearer_tokens(schema):
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert {"bearerAuth": []} in schema["paths"]["/api/v1/jobs/"]["post"]["security"]


def test_status_words_are_the_canonical_enum(schema):
    assert schema["components"]["schemas"]["JobStatusEnum"]["enum"] == [
        "NOT_STARTED",
        "RUNNING",
        "FINISHED",
        "FAILED",
        "PARTIALLY_FAILED",
        "CANCELLING",
        "CANCELLED",
    ]


def test_the_docs_ui_renders_from_our_own_assets(client):
    page = client.get("/api/docs/")

    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert 'id="swagger-ui"' in html
    assert "/api/schema/" in html
    # Nothing is fetched from elsewhere: no absolute URL anywhere in the page.
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "cdn." not in html and "validator.swagger.io" not in html
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 100, asset


def test_the_dts_endpoints_show_examples_of_what_they_answer(schema):
    def examples(operation: dict) -> dict:
        content = operation["responses"]["200"]["content"]["application/json"]
        return content["examples"]

    resources = examples(schema["paths"]["/dts/resources"]["get"])
    (listed,) = resources.values()
    (resource,) = listed["value"]
    assert isinstance(resource["hash"], str) and len(resource["hash"]) == 32
    assert resource["mediatype"] == resource["media_type"]
    assert resource["credit"]["resource_type"] == "dataset"
    (found,) = examples(schema["paths"]["/dts/search"]["get"]).values()
    assert found["value"][0]["id"] == resource["id"]
    (user,) = examples(schema["paths"]["/dts/localuser/{orcid}"]["get"]).values()
    assert user["value"] == {"orcid": "0000-0002-1825-0097", "username": "psyclay"}
    search_parameters = {p["name"] for p in schema["paths"]["/dts/search"]["get"]["parameters"]}
    assert search_parameters >= {"query", "limit", "offset"}


def test_the_docs_ui_never_keeps_a_token_in_the_browser(client):
    html = client.get("/api/docs/").content.decode()

    assert '"persistAuthorization": false' in html


def test_the_schema_is_built_once_and_then_served_as_built(client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    from staging.api.schema import SchemaView

    monkeypatch.setattr(SchemaView, "_built", {})
    builds = []
    original = SchemaGenerator.get_schema
    monkeypatch.setattr(
        SchemaGenerator,
        "get_schema",
        lambda self, *a, **kw: builds.append(1) or original(self, *a, **kw),
    )

    first = client.get("/api/schema/?format=json")
    second = client.get("/api/schema/?format=json")
    as_yaml = client.get("/api/schema/")

    assert len(builds) == 2  # once per format
    assert first.json() == second.json() == yaml.safe_load(as_yaml.content)
    assert second["Content-Disposition"] == first["Content-Disposition"]
    assert as_yaml["Content-Disposition"].endswith('.yaml"')
