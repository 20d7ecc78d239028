"""Render deploy/k8s with kustomize and read the rendered objects the way Kubernetes would.

`kubectl kustomize` renders offline (no cluster needed). What is read here is only what the
tests check: pod templates, their containers, label selectors, and NetworkPolicy decisions
(which peer may open a connection to which pod and port).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
NAMESPACE = "inference-mesh"
MESH_IMAGES = ("inference-mesh", "inference-mesh-gpu")

# What `make test` renders: the base, both overlays, and the base with every component (so a
# component no overlay uses yet, such as tls, is rendered and checked too).
ALL_COMPONENTS = (
    "telemetry",
    "postgres",
    "postgres-eval",
    "postgres-managed",
    "service-monitor",
    "tls",
)
TARGETS = ("base", "overlays/cpu", "overlays/gpu", "all-components")

Obj = dict[str, Any]


MIN_KUSTOMIZE = (5, 0)  # components, `labels`, sidecar-aware strategic merge


@functools.cache
def kubectl() -> str:
    """kubectl on PATH with kustomize 5 or newer; anything else fails the test (.ci/run
    installs kubectl where the machine image lacks it)."""
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl not found: install it (Debian: apt-get install kubectl; .ci/run does) to "
            "render deploy/k8s with `kubectl kustomize`"
        )
    proc = subprocess.run(
        [found, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        version = json.loads(proc.stdout)["kustomizeVersion"]
        major_minor = tuple(int(x) for x in version.lstrip("v").split(".")[:2])
    except (ValueError, KeyError) as err:
        pytest.fail(f"cannot read the kustomize version of {found}: {err!r} {proc.stderr[-500:]}")
    if major_minor < MIN_KUSTOMIZE:
        pytest.fail(f"{found} embeds kustomize {version}; deploy/k8s needs v5 or newer")
    return found


def kustomize(directory: Path) -> list[Obj]:
    """`kubectl kustomize DIR` as a list of objects; a failed render fails the test."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{proc.stderr[-3000:]}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def write_all_components(directory: Path) -> Path:
    """A kustomization in `directory`: the base plus every component, by relative path."""
    rel = Path(os.path.relpath(K8S, directory))
    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        f"namespace: {NAMESPACE}",
        "resources:",
        f"  - {rel / 'base'}",
        "components:",
        *(f"  - {rel / 'components' / name}" for name in ALL_COMPONENTS),
    ]
    (directory / "kustomization.yaml").write_text("\n".join(lines) + "\n")
    return directory


# --- pods ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pod:
    """The pod template of one workload."""

    owner: str  # Kind/name
    labels: dict[str, str]
    spec: dict[str, Any]
    namespace: str = NAMESPACE

    @property
    def component(self) -> str:
        return self.labels.get("app.kubernetes.io/component", "")

    def containers(self) -> list[Obj]:
        """Containers that run beside the app for the pod's life: app containers and native
        sidecars (init containers with restartPolicy Always)."""
        sidecars = [
            c for c in self.spec.get("initContainers", []) if c.get("restartPolicy") == "Always"
        ]
        return [*self.spec.get("containers", []), *sidecars]

    def all_containers(self) -> list[Obj]:
        return [*self.spec.get("initContainers", []), *self.spec.get("containers", [])]

    def ports(self) -> dict[str, int]:
        """Named container ports of every container."""
        return {
            p["name"]: p["containerPort"]
            for c in self.containers()
            for p in c.get("ports", [])
            if "name" in p
        }

    def port_numbers(self) -> set[int]:
        return {p["containerPort"] for c in self.containers() for p in c.get("ports", [])}

    def is_mesh(self) -> bool:
        return any(is_mesh_server(c) for c in self.containers())


def is_mesh_server(container: Obj) -> bool:
    """A container running `mesh ...` (the image's entrypoint, not a command of its own)."""
    return image_name(container["image"]) in MESH_IMAGES and "command" not in container


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def workloads(objs: Iterable[Obj]) -> Iterator[Obj]:
    return (o for o in objs if o["kind"] in WORKLOAD_KINDS)


def pods(objs: Iterable[Obj]) -> list[Pod]:
    return [
        Pod(
            owner=f"{o['kind']}/{o['metadata']['name']}",
            labels=o["spec"]["template"]["metadata"].get("labels", {}),
            spec=_with_claims(o),
            namespace=o["metadata"].get("namespace", ""),
        )
        for o in workloads(objs)
    ]


def _with_claims(workload: Obj) -> dict[str, Any]:
    """The pod spec, with a StatefulSet's volumeClaimTemplates among its volumes."""
    spec = dict(workload["spec"]["template"]["spec"])
    claims = [
        {
            "name": t["metadata"]["name"],
            "persistentVolumeClaim": {"claimName": t["metadata"]["name"]},
        }
        for t in workload["spec"].get("volumeClaimTemplates", [])
    ]
    spec["volumes"] = [*spec.get("volumes", []), *claims]
    return spec


def find(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise AssertionError(f"no {kind}/{name} in the render")


def image_name(image: str) -> str:
    """The repository part of an image reference, without registry host, tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def image_tag(image: str) -> str | None:
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


# --- label selectors -------------------------------------------------------------------------
def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector; an empty one matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def service_selects(service: Obj, pod: Pod) -> bool:
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(pod.labels.get(k) == v for k, v in selector.items())


# --- NetworkPolicy decisions -----------------------------------------------------------------
OUTSIDE = None
"""A peer outside the namespace: a client in another namespace, or an address on the internet."""

NAMESPACE_LABELS = {"kubernetes.io/metadata.name": NAMESPACE}


def _public(block: dict[str, Any]) -> bool:
    """Whether an ipBlock covers public addresses (those outside the cluster)."""
    return ipaddress.ip_network(block["cidr"]).prefixlen == 0


def _peer_matches(peer: dict[str, Any], other: Pod | None) -> bool:
    if "ipBlock" in peer:
        return other is OUTSIDE and _public(peer["ipBlock"])
    if "namespaceSelector" in peer:
        ns_selector = peer["namespaceSelector"]
        if other is OUTSIDE:
            return not ns_selector and not peer.get("podSelector")
        return selector_matches(ns_selector, NAMESPACE_LABELS) and selector_matches(
            peer.get("podSelector"), other.labels
        )
    if other is OUTSIDE:
        return False
    return selector_matches(peer.get("podSelector"), other.labels)


def _port_ok(rule: dict[str, Any], port: int, target: Pod | None) -> bool:
    if not rule.get("ports"):
        return True
    for p in rule["ports"]:
        value = p.get("port")
        if value is None:
            return True
        number = target.ports().get(value) if isinstance(value, str) and target else value
        if number == port:
            return True
    return False


def _types(policy: Obj) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])


def _policies(objs: Iterable[Obj], pod: Pod, direction: str) -> list[Obj]:
    return [
        o
        for o in objs
        if o["kind"] == "NetworkPolicy"
        and direction in _types(o)
        and selector_matches(o["spec"].get("podSelector"), pod.labels)
    ]


def ingress_allowed(objs: list[Obj], dst: Pod, port: int, src: Pod | None) -> bool:
    policies = _policies(objs, dst, "Ingress")
    if not policies:
        return True
    key = "from"
    return any(
        _port_ok(rule, port, dst)
        and (not rule.get(key) or any(_peer_matches(p, src) for p in rule[key]))
        for policy in policies
        for rule in policy["spec"].get("ingress") or []
    )


def egress_allowed(objs: list[Obj], src: Pod, port: int, dst: Pod | None) -> bool:
    policies = _policies(objs, src, "Egress")
    if not policies:
        return True
    return any(
        _port_ok(rule, port, dst)
        and (not rule.get("to") or any(_peer_matches(p, dst) for p in rule["to"]))
        for policy in policies
        for rule in policy["spec"].get("egress") or []
    )


def connects(objs: list[Obj], src: Pod | None, dst: Pod | None, port: int) -> bool:
    """Whether `src` may open a TCP connection to `dst`:`port` (OUTSIDE for either end)."""
    out = src is OUTSIDE or egress_allowed(objs, src, port, dst)
    into = dst is OUTSIDE or ingress_allowed(objs, dst, port, src)
    return out and into


# --- command lines ---------------------------------------------------------------------------
def flags(args: list[str]) -> dict[str, str]:
    """`--name=value` and `--name value` arguments as a dict (flags without a value: "")."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if not eq and i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            out[name] = value
        i += 1
    return out
