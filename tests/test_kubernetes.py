"""deploy/kubernetes renders (kustomize) and every object is valid against the Kubernetes 1.30
schemas in strict mode (no unknown fields); KEDA's ScaledObject, a CRD, against its required
fields. Plus what the manifests promise: the receiver holds no target credential, one scheduler
replaced by Recreate, locked-down containers, and an Ingress for the webhook path only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from clockify_relay.connectors import registry

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
BUILDS = {
    "base": KUSTOMIZE / "base",
    "redis-statefulset": KUSTOMIZE / "overlays" / "redis-statefulset",
    "external-redis": KUSTOMIZE / "overlays" / "external-redis",
}
KUBERNETES_VERSION = "1.30.0"
WEBHOOK_PATH = "/webhooks/clockify"


def kustomize_command() -> list[str]:
    """``kubectl kustomize``, else a standalone ``kustomize build``; skipped (saying why) only
    when neither is installed."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.skip("neither kubectl nor kustomize is installed: cannot render deploy/kubernetes")


def render(name: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [*kustomize_command(), str(BUILDS[name])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kustomize {name} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(BUILDS))
def build(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def validate_scaled_object(obj: dict[str, Any]) -> None:
    """KEDA's ScaledObject (keda.sh/v1alpha1): the fields KEDA requires, and a `redis` list
    trigger with everything that scaler needs, its metadata all strings."""
    assert obj["apiVersion"] == "keda.sh/v1alpha1"
    assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}
    assert obj["metadata"]["name"]
    spec = obj["spec"]
    known = {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "triggers",
        "advanced",
        "fallback",
        "initialCooldownPeriod",
    }
    assert set(spec) <= known, set(spec) - known
    assert spec["scaleTargetRef"]["name"]
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert isinstance(spec.get(key, 0), int), key
    assert spec["triggers"]
    for trigger in spec["triggers"]:
        assert set(trigger) <= {"type", "metadata", "name", "authenticationRef", "metricType"}
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger
        if trigger["type"] == "redis":
            meta = trigger["metadata"]
            assert "address" in meta or "addressFromEnv" in meta or {"host", "port"} <= set(meta)
            assert meta["listName"] and int(meta["listLength"]) > 0


def test_every_object_is_valid_for_kubernetes_1_30(
    build: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = build
    assert objects, name
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            validate_scaled_object(obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {where}: {exc.message}")


def test_the_base_has_every_part(build: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = build
    for kind, name in [
        ("Deployment", "clockify-relay-receiver"),
        ("Deployment", "clockify-relay-worker"),
        ("Deployment", "clockify-relay-scheduler"),
        ("Service", "clockify-relay"),
        ("Service", "clockify-relay-admin"),
        ("Ingress", "clockify-relay"),
        ("Secret", "clockify-relay"),
        ("HorizontalPodAutoscaler", "clockify-relay-receiver"),
        ("ScaledObject", "clockify-relay-worker"),
    ]:
        named(objects, kind, name)
    assert of_kind(objects, "PodDisruptionBudget")
    [config] = [c for c in of_kind(objects, "ConfigMap") if "relay.toml" in c.get("data", {})]
    assert config["data"]["relay.toml"] == (ROOT / "relay.example.toml").read_text()


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def test_the_receiver_gets_no_target_credential(
    build: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = build
    receiver = container(named(objects, "Deployment", "clockify-relay-receiver"))
    assert "envFrom" not in receiver  # every variable is named, so none comes in unseen
    names = {env["name"] for env in receiver["env"]}
    target_vars = {var.name for spec in registry.specs() for var in spec.env}
    target_vars |= {"CLOCKIFY_API_KEY"}
    assert names & target_vars == set()
    secret_keys = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for env in receiver["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert secret_keys & target_vars == set()
    assert {"REDIS_URL", "CLOCKIFY_WEBHOOK_TOKENS", "RELAY_ADMIN_JWT_SECRET"} <= names
    # The admin API on its own port and Service.
    assert receiver["command"][receiver["command"].index("--admin-port") + 1] == "8001"
    admin = named(objects, "Service", "clockify-relay-admin")
    assert [p["port"] for p in admin["spec"]["ports"]] == [8001]
    # Probes and a drain.
    assert receiver["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert receiver["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert receiver["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def test_one_scheduler_replaced_by_recreate(build: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = build
    scheduler = named(objects, "Deployment", "clockify-relay-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}
    assert container(scheduler)["command"] == ["clockify-relay", "scheduler"]


def test_workers_probe_their_heartbeat_and_outlast_their_soft_shutdown(
    build: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = build
    worker = named(objects, "Deployment", "clockify-relay-worker")
    spec = container(worker)
    assert spec["livenessProbe"]["exec"]["command"][:2] == ["clockify-relay", "worker-alive"]
    env = {e["name"]: e.get("value") for e in spec["env"]}
    soft = float(env["RELAY_SOFT_SHUTDOWN_TIMEOUT"] or 0)
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= soft + 15
    scaled = named(objects, "ScaledObject", "clockify-relay-worker")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == "relay:relay"  # default prefix + QUEUE


def test_every_container_is_locked_down(build: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = build
    workloads = of_kind(objects, "Deployment") + of_kind(objects, "StatefulSet")
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        for item in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}: {workload['metadata']['name']}/{item['name']}"
            context = item.get("securityContext", {})
            run_as_non_root = context.get(
                "runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot")
            )
            assert run_as_non_root is True, where
            user = context.get("runAsUser", pod.get("securityContext", {}).get("runAsUser"))
            assert user is not None and user != 0, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert "resources" in item and item["resources"]["requests"], where
            mounts = {m["mountPath"] for m in item.get("volumeMounts", [])}
            if item["image"] != "redis:7":
                assert "/tmp" in mounts, where  # heartbeat file, scratch


def test_the_ingress_routes_only_the_webhook_path(
    build: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = build
    [ingress] = of_kind(objects, "Ingress")
    assert "defaultBackend" not in ingress["spec"]
    paths = [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [(WEBHOOK_PATH, "Exact")]
    assert paths[0]["backend"]["service"]["name"] == "clockify-relay"


def test_redis_statefulset_is_durable_and_never_evicts() -> None:
    objects = render("redis-statefulset")
    redis = named(objects, "StatefulSet", "clockify-relay-redis")
    args = container(redis)["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "always"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert redis["spec"]["volumeClaimTemplates"]
    named(objects, "Service", "clockify-relay-redis")
    secret = named(objects, "Secret", "clockify-relay")
    assert secret["stringData"]["REDIS_URL"].startswith("redis://clockify-relay-redis:6379/")


def test_external_redis_takes_the_url_and_sentinels_from_the_secret() -> None:
    objects = render("external-redis")
    assert not of_kind(objects, "StatefulSet")
    secret = named(objects, "Secret", "clockify-relay")
    assert {"REDIS_URL", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"} <= set(secret["stringData"])
    for deployment in of_kind(objects, "Deployment"):
        env = {e["name"]: e for e in container(deployment)["env"]}
        for name in ("REDIS_URL", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"):
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "clockify-relay", name
