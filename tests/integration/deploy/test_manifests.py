"""conf/docker-compose.yml against the Compose specification, conf/k8s against Kubernetes 1.37 schemas, offline."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from refapi.config import _ENV_NAMES, Settings
from tests.support.processes import REPO

COMPOSE = REPO / "conf" / "docker-compose.yml"
K8S = REPO / "conf" / "k8s"
KUBERNETES_VERSION = "1.37.0"
# Read by gunicorn's config rather than Settings; still a contract §4 name.
LAUNCHER_NAMES = {"PROMETHEUS_MULTIPROC_DIR"}
# Compose's own `${NAME:-default}` syntax, resolved to its default the way `docker compose config` would.
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def contract_names() -> set[str]:
    return {_ENV_NAMES.get(f.name, f.name.upper()) for f in dataclasses.fields(Settings)} | LAUNCHER_NAMES


def compose_schema() -> dict[str, Any]:
    # check-jsonschema vendors the Compose specification's schema (compose-spec/compose-spec, schema/).
    source = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    return schema


def interpolated(value: Any) -> Any:
    if isinstance(value, str):
        return INTERPOLATION.sub(lambda match: match.group(2), value)
    if isinstance(value, dict):
        return {key: interpolated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolated(item) for item in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(compose_schema())(compose_schema())
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(compose)]
    assert errors == []
    # The schema really is strict: a misspelt service key fails it.
    broken = copy.deepcopy(compose)
    broken["services"]["refapi"]["enviroment"] = {}
    assert not validator.is_valid(broken)


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {"vault", "vault-bootstrap", "postgres", "mysql", "mongodb", "redis-1", "redis-2", "redis-3",
                "redis-cluster-init", "rabbitmq", "refapi", "nginx"}  # fmt: skip
    assert set(services) == expected
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    assert services["rabbitmq"]["image"].endswith("-management")
    assert services["vault"]["command"] == ["server", "-dev"]


def test_only_nginx_is_reachable_from_outside(compose: dict[str, Any]) -> None:
    networks = compose["networks"]
    assert networks["internal"]["internal"] is True
    for name, service in compose["services"].items():
        assert "internal" in service["networks"], name
        if name != "nginx":
            assert "ports" not in service, name
            assert list(service["networks"]) == ["internal"], name
    assert compose["services"]["nginx"]["ports"] == ["8001:8001", "8444:8444"]


def test_services_start_after_what_they_need_is_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shots = {"vault-bootstrap", "redis-cluster-init"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency in one_shots else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} -> {dependency}"
            if dependency not in one_shots:
                assert "healthcheck" in services[dependency], dependency
    assert set(services["refapi"]["depends_on"]) == {
        "vault-bootstrap", "redis-cluster-init", "postgres", "mysql", "mongodb", "rabbitmq",
    }  # fmt: skip
    assert set(services["nginx"]["depends_on"]) == {"refapi", "vault-bootstrap"}


def test_refapi_environment_is_valid_contract_settings_without_credentials(compose: dict[str, Any]) -> None:
    environment = interpolated(compose["services"]["refapi"]["environment"])
    assert set(environment) <= contract_names(), set(environment) - contract_names()
    settings = Settings.from_env({name: str(value) for name, value in environment.items()})
    assert settings.redis_cluster and len(settings.redis_nodes) == 3
    # Credentials reach refapi through Vault only (the bootstrap writes them, the AppRole reads them).
    assert not {name for name in environment if name.endswith(("_PASSWORD", "_TOKEN", "_SECRET_ID"))}
    assert settings.vault_approle_dir in {volume.split(":")[1] for volume in compose["services"]["refapi"]["volumes"]}
    nginx = compose["services"]["nginx"]
    assert [str(ip) for ip in settings.trusted_proxies] == [
        interpolated(nginx["networks"]["internal"]["ipv4_address"]) + "/32"
    ]


def test_nginx_fills_every_template_placeholder_with_the_apps_limit(compose: dict[str, Any]) -> None:
    template = (REPO / "conf" / "nginx.conf").read_text(encoding="utf-8")
    placeholders = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", template))
    nginx_env = compose["services"]["nginx"]["environment"]
    # The image's envsubst leaves unset names in place, which nginx would then reject.
    assert placeholders <= set(nginx_env)
    assert nginx_env["MAX_REQUEST_SIZE"] == compose["services"]["refapi"]["environment"]["MAX_REQUEST_SIZE"]
    assert nginx_env["REFAPI_UPSTREAM"] == "refapi:8001"


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    documents = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")):
            documents.append((name, document))
    return documents


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


@pytest.mark.parametrize("document", [document for _, document in k8s_documents()], ids=lambda doc: doc["kind"])
def test_k8s_manifest_is_valid_for_kubernetes(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_k8s_validation_is_strict() -> None:
    deployment = copy.deepcopy(by_kind("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def by_kind(kind: str) -> dict[str, Any]:
    return next(document for _, document in k8s_documents() if document["kind"] == kind)


def test_deployment_is_probed_hardened_and_scraped() -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {item["name"]: item["value"] for item in container["env"]}
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if not mount.get("readOnly")}
    assert env["PROMETHEUS_MULTIPROC_DIR"] in writable
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    http_port = str(container["ports"][0]["containerPort"])
    assert annotations["prometheus.io/port"] == env["API_FIRST_HTTP_PORT"] == http_port
    # gunicorn's graceful timeout (30 s) must fit in the grace period after the preStop pause.
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30 + container["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_vault_auth_comes_from_a_secret_mounted_where_settings_look() -> None:
    deployment = by_kind("Deployment")
    settings = by_kind("ConfigMap")["data"]
    pod = deployment["spec"]["template"]["spec"]
    volume = next(volume for volume in pod["volumes"] if "secret" in volume)
    assert {item["path"] for item in volume["secret"]["items"]} == {"role-id", "secret-id"}
    mount = next(mount for mount in pod["containers"][0]["volumeMounts"] if mount["name"] == volume["name"])
    assert mount["mountPath"] == settings["VAULT_APPROLE_DIR"]


def test_configmap_holds_valid_contract_settings_without_credentials() -> None:
    data = by_kind("ConfigMap")["data"]
    assert set(data) <= contract_names(), set(data) - contract_names()
    assert not {name for name in data if name.endswith(("_PASSWORD", "_TOKEN", "_SECRET_ID", "_ROLE_ID"))}
    settings = Settings.from_env(data)
    assert settings.redis_cluster and len(settings.redis_nodes) == 3


def test_service_and_scaling_target_the_deployment() -> None:
    deployment = by_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = by_kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {port["name"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports
    target = by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_env_example_names_only_contract_settings_with_valid_values() -> None:
    lines = (REPO / "conf" / "refapi.env.example").read_text(encoding="utf-8").splitlines()
    # Commented-out lines show defaults; they must be valid settings too, so uncommenting one never breaks startup.
    entries = [line.lstrip("# ") for line in lines if re.match(r"^(# )?[A-Z][A-Z0-9_]*=", line)]
    pairs = dict(entry.split("=", 1) for entry in entries)
    assert set(pairs) <= contract_names(), set(pairs) - contract_names()
    Settings.from_env(pairs)
