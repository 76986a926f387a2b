"""The Kubernetes manifests parse, are consistent with each other and with the real CLI.

They cannot be applied here (no cluster); this checks what can be checked offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jobrec.cli import build_parser

K8S = Path(__file__).resolve().parent.parent / "k8s"


def _docs() -> list[dict]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
    return docs


def _one(kind: str) -> dict:
    found = [d for d in _docs() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def test_every_manifest_is_valid_yaml_with_kind_and_name():
    docs = _docs()
    kinds = {d["kind"] for d in docs}
    assert {"RayCluster", "Deployment", "Service", "CronJob", "Namespace"} <= kinds
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "jobrec"


def test_raycluster_shape():
    rc = _one("RayCluster")
    assert rc["apiVersion"] == "ray.io/v1"
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"gcs", "client"} <= {p["name"] for p in head["ports"]}
    workers = rc["spec"]["workerGroupSpecs"]
    assert workers and all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in workers)


def _container(spec: dict) -> dict:
    (container,) = spec["containers"]
    return container


def test_serve_deployment_and_service_agree():
    dep, svc = _one("Deployment"), _one("Service")
    pod = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    c = _container(pod["spec"])
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in port_names
    grpc_port = port_names["grpc"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["grpc"]["port"] == grpc_port
    # the probes call the health service, which is exempt from API keys
    assert c["readinessProbe"]["grpc"]["service"] == "jobrec.v1.RecommendationService"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    assert {m["name"] for m in c["volumeMounts"]} <= volumes
    args = build_parser().parse_args([*c["command"][1:], *c["args"]])
    assert args.command == "serve" and args.port == grpc_port and args.host == "0.0.0.0"
    assert args.metrics_port == port_names["metrics"]
    assert any(str(args.api_keys_file).startswith(m) for m in mounts)
    assert args.ray_address.startswith("ray://jobrec-ray-head-svc:")


def test_refresh_cronjob_runs_the_real_refresh_command():
    cj = _one("CronJob")
    fields = cj["spec"]["schedule"].split()
    assert len(fields) == 5
    c = _container(cj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    assert c["command"] == ["jobrec"]
    args = build_parser().parse_args(c["args"])
    assert args.command == "refresh"
    serve_args = _container(_one("Deployment")["spec"]["template"]["spec"])["args"]
    # the frontend loads what the refresh writes
    assert f"--embeddings={args.embeddings_out}" in serve_args


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_no_tabs_or_placeholders(path):
    text = path.read_text()
    assert "\t" not in text
    assert "TODO" not in text and "FIXME" not in text
