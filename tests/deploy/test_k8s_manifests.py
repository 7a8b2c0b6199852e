"""deploy/k8s rendered with kustomize (`kubectl kustomize`, or a `kustomize` binary) and every object validated
offline against the Kubernetes OpenAPI JSON schemas shipped by the ``kubernetes-validate`` package (strict: unknown
fields are errors), for the oldest Kubernetes the manifests need (1.27: gRPC probes GA) and the newest schema set.
Then the deployment's own rules: headless Services, gRPC probes on the gRPC port, requests and limits everywhere,
a PodDisruptionBudget per Deployment, Secrets only referenced, every environment name a Vantage setting.

Without a kustomize renderer the rendered checks skip, unless ``VANTAGE_REQUIRE_KUSTOMIZE=1`` (``make k8s-check``);
the raw resource files are validated either way.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from services.sandbox.config import SandboxSettings
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["small", "demo"]
#: 1.27 = the first release with gRPC probes GA (kubernetes.io/docs/tasks/configure-pod-container/
#: configure-liveness-readiness-startup-probes/#define-a-grpc-liveness-probe); plus the newest schemas shipped.
K8S_VERSIONS = sorted({"1.27.0", "1.33.0", kubernetes_validate.latest_version()})
GRPC_PORTS = {"orchestrator": 50050, "search": 50051, "inference": 50052, "extraction": 50053}
SECRETS = {"vantage-database", "vantage-providers", "vantage-auth"}
PROVIDER_KEYS = {"TAVILY_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "BRIGHTDATA_API_TOKEN", "PERPLEXITY_API_KEY"}


def _config_table():
    spec = importlib.util.spec_from_file_location("vantage_config_table", ROOT / "scripts" / "config_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vantage_config_table", module)
    spec.loader.exec_module(module)
    return module


ct = _config_table()
SETTINGS_ENV = set(ct.env_names(Settings))
SANDBOX_ENV = set(ct.env_names(SandboxSettings))


def renderer() -> list[str] | None:
    """The kustomize command line: a standalone ``kustomize build`` or ``kubectl kustomize`` (kustomize is built
    into kubectl since 1.14; Components need kustomize ≥ 3.7, i.e. kubectl ≥ 1.21)."""
    if exe := shutil.which("kustomize"):
        return [exe, "build"]
    if exe := shutil.which("kubectl"):
        return [exe, "kustomize"]
    return None


def render(overlay: str) -> list[dict]:
    cmd = renderer()
    if cmd is None:
        if os.environ.get("VANTAGE_REQUIRE_KUSTOMIZE") == "1":
            pytest.fail("no kustomize renderer: install kubectl (or kustomize) to run make k8s-check")
        pytest.skip("no kustomize renderer (kubectl / kustomize) on PATH")
    out = subprocess.run(
        [*cmd, str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, f"kustomize failed for {overlay}: {out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def by_kind(objs: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def raw_resource_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


# --- schema validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_raw_resource_file_is_valid(version):
    files = raw_resource_files()
    assert len(files) >= 8
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_is_valid(rendered, version):
    _, objs = rendered
    assert len(objs) > 10
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_broken_object():
    # A probe's gRPC port must be an integer, and a container has no "probe" field: both are schema errors.
    bad = yaml.safe_load((K8S / "base" / "search.yaml").read_text().split("---")[1])
    containers(bad)[0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)
    bad = yaml.safe_load((K8S / "base" / "search.yaml").read_text().split("---")[1])
    containers(bad)[0]["probe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


# --- the deployment's rules -------------------------------------------------------------------------------------

def test_services_are_headless_with_grpc_probes(rendered):
    _, objs = rendered
    deployments, services = by_kind(objs, "Deployment"), by_kind(objs, "Service")
    assert {*GRPC_PORTS, "worker"} <= set(deployments)
    for name, port in GRPC_PORTS.items():
        svc = services[name]
        assert svc["spec"]["clusterIP"] == "None", f"{name}: client-side balancing needs a headless Service"
        assert {"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "grpc"} in svc["spec"]["ports"]
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        (c,) = containers(deployments[name])
        assert c["args"] == ["serve", name, "--port", str(port)]
        assert {"name": "grpc", "containerPort": port} in c["ports"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == port, f"{name} {probe}"
    (w,) = containers(deployments["worker"])
    assert w["args"] == ["worker"] and "readinessProbe" not in w


def test_every_container_has_requests_and_limits_and_runs_unprivileged(rendered):
    _, objs = rendered
    for obj in [*by_kind(objs, "Deployment").values(), *by_kind(objs, "Job").values()]:
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), f"{obj['metadata']['name']}: {part}"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_a_disruption_budget_covers_every_deployment(rendered):
    _, objs = rendered
    pdbs = list(by_kind(objs, "PodDisruptionBudget").values())
    for name, dep in by_kind(objs, "Deployment").items():
        if name == "sandbox":
            continue  # one demo replica with in-memory state: nothing to keep available
        labels = dep["spec"]["template"]["metadata"]["labels"]
        covering = [
            p for p in pdbs if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())
        ]
        assert len(covering) == 1, f"{name}: {len(covering)} PodDisruptionBudgets"
        assert covering[0]["spec"]["maxUnavailable"] == 1


def test_secrets_are_referenced_never_shipped(rendered):
    _, objs = rendered
    assert by_kind(objs, "Secret") == {}, "Secrets are created by the operator, never rendered from the repo"
    refs: dict[str, dict] = {}
    for obj in [*by_kind(objs, "Deployment").values(), *by_kind(objs, "Job").values()]:
        for c in containers(obj):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in SECRETS and ref["key"] == env["name"]
                    refs[env["name"]] = ref
    assert PROVIDER_KEYS <= set(refs) and "DATABASE_URL" in refs
    assert all(refs[k]["optional"] is True for k in PROVIDER_KEYS)  # the sandbox needs none
    assert refs["DATABASE_URL"].get("optional", False) is False  # PostgreSQL is required


def test_every_environment_name_is_a_setting(rendered):
    overlay, objs = rendered
    (config,) = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("vantage-config")]
    names = set(config["data"])
    for obj in [*by_kind(objs, "Deployment").values(), *by_kind(objs, "Job").values()]:
        for c in containers(obj):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] == config["metadata"]["name"]  # the generated (hashed) name
            known = SANDBOX_ENV | SETTINGS_ENV if obj["metadata"]["name"] == "sandbox" else SETTINGS_ENV
            for env in c.get("env", []):
                assert env["name"] in known, f"{obj['metadata']['name']}: {env['name']} is not a setting"
    assert names <= SETTINGS_ENV, names - SETTINGS_ENV
    for name, port in GRPC_PORTS.items():
        assert config["data"][f"VANTAGE_{name.upper()}_ADDR"] == f"dns:///{name}:{port}"
    if overlay == "demo":
        assert config["data"]["VANTAGE_SANDBOX_URL"] == "http://sandbox:8080"
        assert by_kind(objs, "Service")["sandbox"]["spec"]["ports"][0]["port"] == 8080
    else:
        assert "VANTAGE_SANDBOX_URL" not in config["data"] and "sandbox" not in by_kind(objs, "Deployment")


#: The settings model each workload reads (shared.config.SERVICE_SETTINGS; the worker is the orchestrator's
#: `vantage worker`); the migration Job needs the database URL only.
WORKLOAD_MODELS = {"search": "search", "inference": "inference", "extraction": "extraction",
                   "orchestrator": "orchestrator", "worker": "orchestrator"}


def test_each_workload_gets_only_its_own_secret_keys(rendered):
    # Issue 12 item 6: the Secret keys a container receives are exactly the secrets its service's settings model
    # reads (the search pods never see an LLM key, the orchestrator none at all), never another service's.
    from shared.config import SERVICE_SETTINGS, env_names

    _, objs = rendered
    for obj in [*by_kind(objs, "Deployment").values(), *by_kind(objs, "Job").values()]:
        name = obj["metadata"]["name"]
        got = {e["name"] for c in containers(obj) for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        if name == "vantage-db-upgrade":
            assert got == {"DATABASE_URL"}, got
            continue
        if name == "sandbox":
            assert got == set(), got
            continue
        model = SERVICE_SETTINGS[WORKLOAD_MODELS[name]]
        wanted = {"DATABASE_URL"} if "database_url" in model.model_fields else set()
        if "search_database_url" in model.model_fields:  # a URL with a password: a Secret key, never the ConfigMap
            wanted.add(env_names(model, "search_database_url")[0])
        for field, info in model.model_fields.items():
            if "SecretStr" in repr(info.annotation):
                wanted.add(env_names(model, field)[0])  # the vendor's own name: the Secret's key
        assert got == wanted, (name, got ^ wanted)
