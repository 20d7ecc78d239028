"""deploy/k8s rendered offline: kustomize builds every target, every object validates against
the Kubernetes 1.31 and newest bundled schemas in strict mode, the routers' mesh.yaml loads with
the mesh's own config loader, and the rules the manifests promise hold over what is rendered.

Needs `kubectl` (for `kubectl kustomize`) and `kubernetes-validate` (dev extra); neither is
skipped when missing: .ci/run installs kubectl, `make install` the validator.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mesh.config import MeshConfig, is_loopback, parse_config
from tests.deploy.k8s import (
    K8S,
    MESH_IMAGES,
    NAMESPACE,
    OUTSIDE,
    ROOT,
    TARGETS,
    Obj,
    Pod,
    connects,
    find,
    flags,
    image_name,
    image_tag,
    is_mesh_server,
    kustomize,
    pods,
    selector_matches,
    service_selects,
    write_all_components,
)

# Oldest Kubernetes the manifests support, and the newest the validator bundles.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())

# Kinds without a schema in kubernetes-validate: each is checked by a test of its own below.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}
EXPECTED_CUSTOM = {
    "base": set(),
    "overlays/cpu": set(),
    "overlays/gpu": {"ServiceMonitor"},
    "all-components": {"ServiceMonitor", "Certificate", "Issuer"},
}

# Secrets the operator creates (README, "Run it on Kubernetes"); cert-manager creates the rest.
USER_SECRETS = {
    "mesh-registry-token",
    "mesh-admin-key",
    "mesh-provider-keys",
    "mesh-postgres",
    "mesh-hf-token",
}
SECRET_NAME = re.compile(r"KEY|TOKEN|PASSWORD|SECRET|CREDENTIAL", re.IGNORECASE)
NOT_A_SECRET = re.compile(r"_(PATH|FILE|ENV|DIR)$")

MESH_UID = 10001
INFERENCE_SERVICE = "mesh.v1.InferenceService"


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    out = {}
    for target in TARGETS:
        if target == "all-components":
            directory = write_all_components(tmp_path_factory.mktemp("all-components"))
        else:
            directory = K8S / target
        out[target] = kustomize(directory)
    return out


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objs(renders: dict[str, list[Obj]], target: str) -> list[Obj]:
    return renders[target]


def _name(o: Obj) -> str:
    return f"{o['kind']}/{o['metadata']['name']}"


def _project_version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(data["project"]["version"])


def _mesh_containers(pod: Pod) -> list[Obj]:
    """Containers running a mesh server: the image's `mesh` entrypoint, not another program
    from the same image (the GPU pod's vLLM server)."""
    return [c for c in pod.containers() if is_mesh_server(c)]


# --- render and schema ------------------------------------------------------------------------
def test_every_target_renders(objs: list[Obj], target: str) -> None:
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds, target
    names = [_name(o) for o in objs]
    assert len(names) == len(set(names)), f"duplicate objects in {target}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(objs: list[Obj], target: str, version: str) -> None:
    custom = set()
    for o in objs:
        if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS:
            custom.add(o["kind"])
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{target}: {_name(o)} invalid for {version} at {list(err.path)}: {err}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{target}: {_name(o)} has no schema and no check of its own here")
    assert custom == EXPECTED_CUSTOM[target]


def test_custom_kinds_are_checked(objs: list[Obj]) -> None:
    """ServiceMonitor, Certificate and Issuer: what their schemas would catch, and more."""
    services = [o for o in objs if o["kind"] == "Service"]
    issuers = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Issuer"}
    certificates = [o for o in objs if o["kind"] == "Certificate"]
    for o in objs:
        spec = o.get("spec", {})
        if o["kind"] == "ServiceMonitor":
            assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
            chosen = [
                s for s in services if selector_matches(spec["selector"], s["metadata"]["labels"])
            ]
            for endpoint in spec["endpoints"]:
                assert set(endpoint) <= {"port", "path", "interval", "scheme", "relabelings"}
                with_port = [
                    s
                    for s in chosen
                    if any(p["name"] == endpoint["port"] for p in s["spec"]["ports"])
                ]
                components = {
                    s["metadata"]["labels"]["app.kubernetes.io/component"] for s in with_port
                }
                assert components == {"router", "node", "bridge"}, components
                # One Service per component gives targets: no pod is scraped twice.
                assert len(with_port) == 3, [s["metadata"]["name"] for s in with_port]
        elif o["kind"] == "Issuer":
            kinds = set(spec) & {"selfSigned", "ca", "acme", "vault"}
            assert len(kinds) == 1, _name(o)
            if "ca" in spec:
                assert any(
                    c["spec"]["secretName"] == spec["ca"]["secretName"] for c in certificates
                )
        elif o["kind"] == "Certificate":
            assert set(spec) <= {
                "secretName", "duration", "renewBefore", "privateKey", "usages", "commonName",
                "dnsNames", "issuerRef", "isCA",
            }  # fmt: skip
            ref = spec["issuerRef"]
            assert ref["kind"] == "Issuer" and ref["group"] == "cert-manager.io"
            assert ref["name"] in issuers, f"{_name(o)} names no rendered Issuer"
            if not spec.get("isCA"):
                assert {"server auth", "client auth"} <= set(spec["usages"]), _name(o)
                assert spec["dnsNames"], _name(o)


# --- mesh.yaml -------------------------------------------------------------------------------
def _mesh_configs(objs: list[Obj]) -> dict[str, MeshConfig]:
    return {
        o["metadata"]["name"]: parse_config(o["data"]["mesh.yaml"], f"{o['metadata']['name']}")
        for o in objs
        if o["kind"] == "ConfigMap" and "mesh.yaml" in o.get("data", {})
    }


def _secret_mounts(pod: Pod, container: Obj) -> dict[str, tuple[str, set[str]]]:
    """mountPath -> (Secret name, file names it holds) for the container's Secret volumes."""
    volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
    out = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret:
            files = {i["path"] for i in secret.get("items", [])}
            out[mount["mountPath"]] = (secret["secretName"], files)
    return out


def _file_from_secret(pod: Pod, container: Obj, path: str | Path) -> str:
    """The Secret a file path in the container comes from (fails when none)."""
    path = Path(path)
    for mount_path, (secret, files) in _secret_mounts(pod, container).items():
        if path.parent == Path(mount_path) and (not files or path.name in files):
            return secret
    raise AssertionError(f"{pod.owner}: {path} is not a file of a mounted Secret")


def test_router_mesh_yaml_loads_and_matches_the_pod(objs: list[Obj]) -> None:
    configs = _mesh_configs(objs)
    assert configs, "no ConfigMap holds a mesh.yaml"
    router = next(p for p in pods(objs) if p.component == "router")
    container = router.containers()[0]
    args = flags(container["args"])
    volumes = {v["name"]: v for v in router.spec["volumes"]}
    config_path = Path(args["--config"])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent)
    config_map = volumes[mount["name"]]["configMap"]["name"]
    assert config_map in configs, f"the router reads {config_map}, which holds no mesh.yaml"
    config = configs[config_map]

    ports = router.ports()
    assert not is_loopback(config.router.listen)
    assert int(config.router.listen.rpartition(":")[2]) == ports["grpc"]
    assert config.telemetry.prometheus_listen is not None
    assert int(config.telemetry.prometheus_listen.rpartition(":")[2]) == ports["metrics"]
    # Off loopback, registration is by token only, and both secrets are files from Secrets.
    assert config.router.registry.mode == "token"
    assert config.router.registry.token_file is not None
    token = _file_from_secret(router, container, config.router.registry.token_file)
    assert token == "mesh-registry-token"
    assert config.router.guards.admin_key_file is not None
    assert _file_from_secret(router, container, config.router.guards.admin_key_file) == (
        "mesh-admin-key"
    )


def test_postgres_component_changes_only_the_database_urls() -> None:
    base = yaml.safe_load((K8S / "base" / "router-mesh.yaml").read_text())
    with_pg = yaml.safe_load((K8S / "components" / "postgres" / "router-mesh.yaml").read_text())
    assert with_pg["router"].pop("ledger") == {"url": "postgresql+asyncpg://"}
    assert with_pg["router"]["guards"].pop("audit_url") == "postgresql+asyncpg://"
    assert with_pg == base


def test_postgres_urls_come_with_their_secret(renders: dict[str, list[Obj]]) -> None:
    for target in ("overlays/cpu", "overlays/gpu", "all-components"):
        objs = renders[target]
        config = next(iter(_mesh_configs(objs).values()))
        assert config.router.ledger_url().startswith("postgresql+asyncpg://"), target
        router = next(p for p in pods(objs) if p.component == "router")
        env_from = router.containers()[0].get("envFrom", [])
        assert {"secretRef": {"name": "mesh-postgres"}} in env_from, target
        policies = [o["metadata"]["name"] for o in objs if o["kind"] == "NetworkPolicy"]
        assert any(name.startswith("mesh-router-to-") for name in policies), target


def test_collector_config_matches_the_compose_one() -> None:
    k8s = yaml.safe_load(
        (K8S / "components" / "telemetry" / "otel-collector-config.yaml").read_text()
    )
    compose = yaml.safe_load((ROOT / "deploy" / "telemetry" / "otel-collector.yaml").read_text())
    assert k8s == compose


# --- containers: probes, resources, security, images ------------------------------------------
def _probe_port(probe: dict[str, Any]) -> int | str:
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            return probe[kind]["port"]  # type: ignore[no-any-return]
    return "exec"


def test_every_container_has_probes(objs: list[Obj]) -> None:
    for pod in pods(objs):
        for c in pod.containers():
            where = f"{pod.owner}/{c['name']}"
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(probe_name)
                assert probe, f"{where}: no {probe_name}"
                port = _probe_port(probe)
                names = {p.get("name") for p in c.get("ports", [])}
                numbers = {p["containerPort"] for p in c.get("ports", [])}
                assert port == "exec" or port in names | numbers, f"{where}: {probe_name} port"


def test_mesh_servers_use_grpc_health_probes(objs: list[Obj]) -> None:
    for pod in pods(objs):
        for c in _mesh_containers(pod):
            grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe_name]["grpc"]["port"] == grpc_port, (pod.owner, probe_name)
            # Ready: the inference service itself serves. Live: the process answers.
            assert c["readinessProbe"]["grpc"]["service"] == INFERENCE_SERVICE
            assert "service" not in c["livenessProbe"]["grpc"]


def _window_s(probe: dict[str, Any]) -> int:
    return int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))


def test_model_servers_get_a_long_startup(objs: list[Obj], target: str) -> None:
    node = next(p for p in pods(objs) if p.component == "node")
    engine = next((c for c in node.containers() if c["name"] == "vllm"), node.containers()[0])
    # Engine start and model load: 15 minutes; a first download of 8B weights: 30.
    needed = 1800 if engine["name"] == "vllm" else 900
    assert _window_s(engine["startupProbe"]) >= needed, target


def test_cpu_engine_threads_match_the_cpu_request(objs: list[Obj]) -> None:
    for pod in pods(objs):
        for c in _mesh_containers(pod):
            if c["args"][0] != "node":
                continue
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind", pod.owner
            assert env["OMP_NUM_THREADS"] == str(c["resources"]["requests"]["cpu"]), pod.owner


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {
    None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def _quantity(value: str | int) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"not a quantity: {value}"
    return float(match.group(1)) * _FACTORS[match.group(2)]


def test_every_container_has_resources(objs: list[Obj]) -> None:
    for pod in pods(objs):
        for c in pod.all_containers():
            where = f"{pod.owner}/{c['name']}"
            resources = c.get("resources", {})
            requests, limits = resources.get("requests", {}), resources.get("limits", {})
            assert {"cpu", "memory"} <= set(requests), f"{where}: requests"
            assert "memory" in limits, f"{where}: memory limit"
            assert _quantity(requests["memory"]) <= _quantity(limits["memory"]), where
            # Memory-backed /dev/shm counts against the limit: it must fit inside it.
            volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
            for mount in c.get("volumeMounts", []):
                empty = volumes[mount["name"]].get("emptyDir") or {}
                if empty.get("medium") == "Memory":
                    assert _quantity(empty["sizeLimit"]) < _quantity(limits["memory"]), where


def test_every_container_is_locked_down(objs: list[Obj]) -> None:
    for pod in pods(objs):
        spec = pod.spec
        ctx = spec.get("securityContext", {})
        assert ctx.get("runAsNonRoot") is True, pod.owner
        assert ctx.get("runAsUser", 0) != 0, pod.owner
        assert ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, pod.owner
        assert spec.get("automountServiceAccountToken") is False, pod.owner
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), f"{pod.owner}: {key}"
        assert not any("hostPath" in v for v in spec.get("volumes", [])), pod.owner
        for c in pod.all_containers():
            where = f"{pod.owner}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not sc.get("privileged"), where
        if pod.is_mesh():
            assert ctx["runAsUser"] == MESH_UID, pod.owner  # the Containerfile's user
            for c in _mesh_containers(pod):
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{pod.owner}/{c['name']}: no writable /tmp"


def test_namespace_enforces_restricted_pod_security(objs: list[Obj]) -> None:
    ns = find(objs, "Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for o in objs:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == NAMESPACE, _name(o)


def test_image_tags_are_pinned(objs: list[Obj]) -> None:
    version = _project_version()
    for pod in pods(objs):
        for c in pod.all_containers():
            tag = image_tag(c["image"])
            assert tag and tag != "latest", f"{pod.owner}/{c['name']}: {c['image']}"
            if image_name(c["image"]) in MESH_IMAGES:
                assert tag == version, f"{c['image']}: the image of version {version}"


# --- GPUs ---------------------------------------------------------------------------------------
GPU = "nvidia.com/gpu"


def test_gpus_only_on_gpu_node_pods(objs: list[Obj], target: str) -> None:
    with_gpu = []
    for pod in pods(objs):
        for c in pod.all_containers():
            resources = c.get("resources", {})
            requested = resources.get("requests", {}).get(GPU)
            limited = resources.get("limits", {}).get(GPU)
            if requested is None and limited is None:
                continue
            with_gpu.append((pod, c))
            assert requested == limited == 1, f"{pod.owner}/{c['name']}: {GPU} requests = limits"
            assert pod.component == "node", f"{pod.owner} is not a model node"
            assert pod.spec.get("nodeSelector", {}).get(f"{GPU}.present") == "true", pod.owner
            assert any(t.get("key") == GPU for t in pod.spec.get("tolerations", [])), pod.owner
    if target == "overlays/gpu":
        assert [(p.component, c["name"]) for p, c in with_gpu] == [("node", "vllm")]
    else:
        assert with_gpu == [], f"{target} must not ask for GPUs"


def test_gpu_node_serves_a_real_model_through_the_mesh(renders: dict[str, list[Obj]]) -> None:
    objs = renders["overlays/gpu"]
    node = next(p for p in pods(objs) if p.component == "node")
    vllm = next(c for c in node.containers() if c["name"] == "vllm")
    mesh = next(c for c in node.containers() if c["name"] == "node")
    vllm_args, mesh_args = flags(vllm["args"]), flags(mesh["args"])
    assert vllm_args["--model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert mesh["args"][0] == "bridge"
    assert mesh_args["--provider"] == "openai-compatible"
    assert mesh_args["--model"] == vllm_args["--served-model-name"]
    port = next(p["containerPort"] for p in vllm["ports"] if p["name"] == "vllm-http")
    assert mesh_args["--base-url"] == f"http://127.0.0.1:{port}/v1"
    # The Hugging Face token is a file from its Secret, never an environment value.
    env = {e["name"]: e for e in vllm["env"]}
    assert _file_from_secret(node, vllm, env["HF_TOKEN_PATH"]["value"]) == "mesh-hf-token"
    volumes = {v["name"]: v for v in node.spec["volumes"]}
    claim = volumes["model-cache"]["persistentVolumeClaim"]["claimName"]
    find(objs, "PersistentVolumeClaim", claim)
    assert "emptyDir" not in volumes["model-cache"]
    assert find(objs, "Deployment", "mesh-node")["spec"]["strategy"] == {"type": "Recreate"}


# --- Secrets ------------------------------------------------------------------------------------
def _secret_refs(pod: Pod) -> set[str]:
    refs = {v["secret"]["secretName"] for v in pod.spec.get("volumes", []) if "secret" in v}
    for c in pod.all_containers():
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add(ref["name"])
        for e in c.get("envFrom", []):
            if "secretRef" in e:
                refs.add(e["secretRef"]["name"])
    return refs


def test_secrets_are_referenced_never_inlined(objs: list[Obj]) -> None:
    assert not [o for o in objs if o["kind"] == "Secret"], "a Secret's value in the manifests"
    made_by_cert_manager = {o["spec"]["secretName"] for o in objs if o["kind"] == "Certificate"}
    for pod in pods(objs):
        unknown = _secret_refs(pod) - USER_SECRETS - made_by_cert_manager
        assert not unknown, f"{pod.owner}: undocumented Secrets {unknown}"
        for c in pod.all_containers():
            for e in c.get("env", []):
                if SECRET_NAME.search(e["name"]) and not NOT_A_SECRET.search(e["name"]):
                    assert "value" not in e, f"{pod.owner}/{c['name']}: {e['name']} inlined"


def test_readme_names_every_secret_and_overlay() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Run it on Kubernetes$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match, "README has no 'Run it on Kubernetes' section"
    section = match.group(1)
    for secret in sorted(USER_SECRETS):
        assert secret in section, f"README does not say how to create {secret}"
    for overlay in ("overlays/cpu", "overlays/gpu"):
        assert f"kubectl apply -k deploy/k8s/{overlay}" in section


# --- how the processes find each other ----------------------------------------------------------
_VAR = re.compile(r"\$\(([A-Z_][A-Z0-9_]*)\)")


def test_nodes_and_bridges_register_where_routers_listen(objs: list[Obj]) -> None:
    services = [o for o in objs if o["kind"] == "Service"]
    router_pod = next(p for p in pods(objs) if p.component == "router")
    for pod in pods(objs):
        for c in _mesh_containers(pod):
            if c["args"][0] not in ("node", "bridge"):
                continue
            where = f"{pod.owner}/{c['name']}"
            args = flags(c["args"])
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            # Every $(VAR) is defined in the container's env.
            env = {e["name"] for e in c.get("env", [])}
            assert set(_VAR.findall(" ".join(c["args"]))) <= env, where
            # --router: a Service in front of the routers, on their gRPC port.
            host, _, port = args["--router"].rpartition(":")
            service = find(services, "Service", host)
            assert service_selects(service, router_pod), where
            assert int(port) in {p["port"] for p in service["spec"]["ports"]}, where
            # --listen / --metrics-listen: the declared ports.
            assert int(args["--listen"].rpartition(":")[2]) == ports["grpc"], where
            assert int(args["--metrics-listen"].rpartition(":")[2]) == ports["metrics"], where
            # --advertise: this pod's own DNS name under a headless Service that selects it.
            subdomain = pod.spec["subdomain"]
            expected = f"$(POD_NAME).{subdomain}.$(POD_NAMESPACE).svc:{ports['grpc']}"
            assert args["--advertise"] == expected, where
            headless = find(services, "Service", subdomain)
            assert headless["spec"]["clusterIP"] == "None", where
            assert headless["spec"].get("publishNotReadyAddresses") is True, where
            assert service_selects(headless, pod), where
            # Each replica registers under its own id.
            assert args["--node-id"] == "$(POD_NAME)", where
            secret = _file_from_secret(pod, c, args["--router-token-file"])
            assert secret == "mesh-registry-token", where
            if "--api-key-file" in args:
                assert _file_from_secret(pod, c, args["--api-key-file"]) == "mesh-provider-keys"


def test_services_select_pods_and_ports(objs: list[Obj]) -> None:
    all_pods = pods(objs)
    for service in (o for o in objs if o["kind"] == "Service"):
        chosen = [p for p in all_pods if service_selects(service, p)]
        assert chosen, f"{_name(service)} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for pod in chosen:
                available = pod.ports() if isinstance(target, str) else pod.port_numbers()
                assert target in available, f"{_name(service)} -> {pod.owner}: {target}"


def test_routers_are_highly_available(objs: list[Obj]) -> None:
    deployment = find(objs, "Deployment", "mesh-router")
    router = next(p for p in pods(objs) if p.component == "router")
    assert deployment["spec"]["replicas"] >= 2
    hpa = find(objs, "HorizontalPodAutoscaler", "mesh-router")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "mesh-router"
    }  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = find(objs, "PodDisruptionBudget", "mesh-router")
    assert selector_matches(pdb["spec"]["selector"], router.labels)
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    spread = router.spec["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} >= {"kubernetes.io/hostname"}
    assert all(selector_matches(s["labelSelector"], router.labels) for s in spread)


# --- NetworkPolicy --------------------------------------------------------------------------------
def test_network_policies_select_the_pods_they_name(objs: list[Obj]) -> None:
    all_pods = pods(objs)
    for policy in (o for o in objs if o["kind"] == "NetworkPolicy"):
        spec = policy["spec"]
        selected = [p for p in all_pods if selector_matches(spec["podSelector"], p.labels)]
        assert selected, f"{_name(policy)} selects no pod"
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction) or []:
                peers = [
                    p for p in rule.get(peers_key) or []
                    if "podSelector" in p and "namespaceSelector" not in p
                ]  # fmt: skip
                for peer in peers:
                    matched = [
                        p for p in all_pods if selector_matches(peer["podSelector"], p.labels)
                    ]
                    assert matched, f"{_name(policy)}: {direction} peer selects no pod"
                # A port a rule opens is a port the pods on the receiving end listen on.
                receivers = selected if direction == "ingress" else [
                    p for peer in peers for p in all_pods
                    if selector_matches(peer["podSelector"], p.labels)
                ]  # fmt: skip
                for port in rule.get("ports") or []:
                    if receivers and isinstance(port["port"], int):
                        assert any(port["port"] in r.port_numbers() for r in receivers), (
                            f"{_name(policy)}: nothing listens on {port['port']}"
                        )


def _by_component(objs: list[Obj]) -> dict[str, Pod]:
    return {
        p.component: p
        for p in pods(objs)
        if p.labels.get("app.kubernetes.io/name") == "inference-mesh"
    }


def test_only_routers_reach_nodes_and_bridges(objs: list[Obj], target: str) -> None:
    all_pods = pods(objs)
    mesh = _by_component(objs)
    names = {p.labels["app.kubernetes.io/name"] for p in all_pods}
    for dst_name, port in (("node", 50061), ("bridge", 50071)):
        dst = mesh[dst_name]
        assert port == dst.ports()["grpc"]
        for src in all_pods:
            allowed = connects(objs, src, dst, port)
            assert allowed == (src.component == "router"), (target, src.owner, dst_name, allowed)
        assert not connects(objs, OUTSIDE, dst, port), f"{target}: outside reaches {dst_name}"
    router = mesh["router"]
    assert connects(objs, OUTSIDE, router, 50051), "clients reach the routers"
    for src in ("node", "bridge"):
        assert connects(objs, mesh[src], router, 50051), f"{src} cannot register"
    # Provider APIs: bridges only (and a GPU node fetching its weights).
    assert connects(objs, mesh["bridge"], OUTSIDE, 443)
    assert not connects(objs, mesh["bridge"], OUTSIDE, 80)
    assert not connects(objs, router, OUTSIDE, 443)
    assert connects(objs, mesh["node"], OUTSIDE, 443) == (target == "overlays/gpu")
    # Everything to the Collector, where there is one.
    if "otel-collector" in names:
        collector = next(
            p for p in all_pods if p.labels["app.kubernetes.io/name"] == "otel-collector"
        )
        for src in mesh.values():
            assert connects(objs, src, collector, 4317), f"{src.owner} cannot export"
    # The evaluation database: routers only.
    if "postgresql" in names:
        db = next(p for p in all_pods if p.labels["app.kubernetes.io/name"] == "postgresql")
        for src in all_pods:
            assert connects(objs, src, db, 5432) == (src.component == "router"), src.owner


# --- TLS (for the TLS work) ------------------------------------------------------------------
def test_tls_component_mounts_each_role_its_certificate(renders: dict[str, list[Obj]]) -> None:
    objs = renders["all-components"]
    certificates = {o["spec"]["secretName"]: o for o in objs if o["kind"] == "Certificate"}
    for pod in pods(objs):
        for c in _mesh_containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "/etc/mesh/tls" in mounts, f"{pod.owner}/{c['name']}"
            volumes = {v["name"]: v for v in pod.spec["volumes"]}
            volume = volumes[mounts["/etc/mesh/tls"]]
            assert "subPath" not in str(c["volumeMounts"]), "renewed files must appear in place"
            cert = certificates[volume["secret"]["secretName"]]
            names = cert["spec"]["dnsNames"]
            if pod.component == "router":
                assert f"mesh-router.{NAMESPACE}.svc" in names
            else:
                # The name the pod advertises (test above): <pod>.<subdomain>.<namespace>.svc.
                assert f"*.{pod.spec['subdomain']}.{NAMESPACE}.svc" in names, pod.owner
