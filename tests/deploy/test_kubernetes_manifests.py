"""deploy/kubernetes: every manifest against the Kubernetes JSON schemas (offline, strict: no
unknown fields), KEDA's kinds by structure, and the properties operators rely on."""

import copy

import kubernetes_validate
import pytest

from tests.deploy.conftest import DEPLOY, load_documents

# The oldest Kubernetes release the manifests claim to work with, and the newest the schema
# package knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# KEDA's custom resources have no schema in kubernetes-validate; they are checked by structure
# in test_the_keda_scaled_object_scales_workers_on_the_staging_list.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def by_kind(documents, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in documents if doc["kind"] == kind}


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def test_every_manifest_file_is_listed_in_the_kustomization(k8s_documents):
    listed = {name for name, _ in k8s_documents}
    on_disk = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_manifest_matches_the_kubernetes_schema(k8s_documents, version):
    checked = 0
    for name, doc in k8s_documents:
        if doc["kind"] in KEDA_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 10


def test_the_schema_check_rejects_a_misspelt_field(k8s_documents):
    deployment = copy.deepcopy(by_kind(k8s_documents, "Deployment")["stagingsvc-web"])
    pod_spec(deployment)["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/healthz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_web_worker_and_beat_deployments_run_the_image_entry_points(k8s_documents):
    deployments = by_kind(k8s_documents, "Deployment")
    assert set(deployments) == {
        "stagingsvc-web",
        "stagingsvc-worker",
        "stagingsvc-control",
        "stagingsvc-webhooks",
        "stagingsvc-beat",
    }
    for name, deployment in deployments.items():
        (container,) = pod_spec(deployment)["containers"]
        assert container["args"] == [name.removeprefix("stagingsvc-")]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_beat_runs_exactly_one_replica_replaced_without_overlap(k8s_documents):
    beat = by_kind(k8s_documents, "Deployment")["stagingsvc-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_web_probes_liveness_on_healthz_and_readiness_on_readyz(k8s_documents):
    (web,) = pod_spec(by_kind(k8s_documents, "Deployment")["stagingsvc-web"])["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = by_kind(k8s_documents, "Service")["stagingsvc-web"]
    port_names = {p["name"] for p in web["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    assert service["spec"]["selector"].items() <= (
        by_kind(k8s_documents, "Deployment")["stagingsvc-web"]["spec"]["template"]["metadata"][
            "labels"
        ].items()
    )


def test_workers_get_longer_than_a_sub_job_copy_to_shut_down(k8s_documents):
    worker = pod_spec(by_kind(k8s_documents, "Deployment")["stagingsvc-worker"])
    # A 2 GiB sub-job at a slow 10 MiB/s takes under 4 minutes; Kubernetes' default is 30 s.
    assert worker["terminationGracePeriodSeconds"] >= 600


def test_pods_run_as_the_image_user_without_privileges(k8s_documents):
    for name, doc in k8s_documents:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = doc["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name


def test_every_reference_names_an_object_that_is_deployed(k8s_documents):
    config_maps = set(by_kind(k8s_documents, "ConfigMap"))
    secrets = set(by_kind(k8s_documents, "Secret"))
    claims = set(by_kind(k8s_documents, "PersistentVolumeClaim"))
    for name, doc in k8s_documents:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in spec["containers"] + spec.get("initContainers", []):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: {mount['name']}"


def test_the_secret_provides_what_production_settings_require(k8s_documents):
    (secret,) = by_kind(k8s_documents, "Secret").values()
    (config,) = by_kind(k8s_documents, "ConfigMap").values()
    assert {
        "SECRET_KEY",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CACHE_URL",
        "METRICS_TOKEN",
    } <= set(secret["stringData"])
    assert config["data"]["DJANGO_SETTINGS_MODULE"] == "stagingsvc.settings.production"


def test_disruption_budgets_cover_web_and_workers(k8s_documents):
    budgets = by_kind(k8s_documents, "PodDisruptionBudget")
    components = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for b in budgets.values()
    }
    assert components == {"web", "worker"}


def test_the_keda_scaled_object_scales_workers_on_the_staging_list(k8s_documents):
    (scaled,) = by_kind(k8s_documents, "ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "stagingsvc-worker"
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    # KEDA reads every metadata value as a string.
    assert all(isinstance(v, str) for v in metadata.values())
    assert metadata["listName"] == "staging"
    assert int(metadata["listLength"]) > 0
    assert ":" in metadata["address"]
    auth = by_kind(k8s_documents, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    secrets = by_kind(k8s_documents, "Secret")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]["stringData"]


def test_the_kustomization_sets_the_image_every_container_uses(k8s_documents):
    kustomization = load_documents(DEPLOY / "kubernetes" / "kustomization.yaml")[0]
    image_names = {image["name"] for image in kustomization["images"]}
    for name, doc in k8s_documents:
        if doc["kind"] in ("Deployment", "Job"):
            spec = doc["spec"]["template"]["spec"]
            for container in spec["containers"] + spec.get("initContainers", []):
                assert container["image"] in image_names, name
