"""The Kubernetes manifests: valid against the operator's CRD schemas and Kubernetes' own
schemas, obey KubeRay's cross-field rules, and agree with each other and with the real CLI.

They cannot be applied here (no cluster); ``tests/k8s_validate.py`` checks offline what the
API server and the KubeRay operator would check.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from jobrec.cli import build_parser
from tests.k8s_validate import validation_errors

K8S = Path(__file__).resolve().parent.parent / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))


def _docs() -> list[dict]:
    docs = []
    for f in MANIFESTS:
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
    return docs


def _one(kind: str, name: str | None = None) -> dict:
    found = [
        d for d in _docs() if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]  # fmt: skip
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return copy.deepcopy(found[0])


def _container(spec: dict) -> dict:
    (container,) = spec["containers"]
    return container


def _store_env() -> dict[str, str]:
    return _one("ConfigMap", "jobrec-store")["data"]


def _parse(argv: list[str], monkeypatch):
    """The real parser, with the environment every jobrec container gets (envFrom)."""
    for key, value in _store_env().items():
        monkeypatch.setenv(key, value)
    return build_parser().parse_args(argv)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc", _docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)  # fmt: skip
def test_every_manifest_is_valid(doc):
    assert validation_errors(doc) == []
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == "jobrec"


def _rc_head(d):
    return d["spec"]["headGroupSpec"]


BROKEN = {
    # schema: an unknown (misspelt) field is rejected, as kubectl's strict validation does
    "typo": ("RayCluster", lambda d: d["spec"].update(gcsFaultToleranceOption={}), "gcsFaultToleranceOption"),
    "wrong-type": ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplicas="8"), "maxReplicas"),
    "missing-required": ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"), "groupName"),
    # KubeRay cross-field rules
    "bounds": ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas=9), "minReplicas"),
    "duplicate-group": ("RayCluster", lambda d: d["spec"]["workerGroupSpecs"].append(
        copy.deepcopy(d["spec"]["workerGroupSpecs"][0])), "unique"),
    "double-resources": ("RayCluster", lambda d: _rc_head(d).update(resources={"CPU": "1"}), "both"),
    "redis-env": ("RayCluster", lambda d: _container(_rc_head(d)["template"]["spec"]).setdefault(
        "env", []).append({"name": "RAY_REDIS_ADDRESS", "value": "x:6379"}), "RAY_REDIS_ADDRESS"),
    "ft-annotation": ("RayCluster", lambda d: d["metadata"].update(
        annotations={"ray.io/ft-enabled": "true"}), "ft-enabled"),
    "start-param-int": ("RayCluster", lambda d: _rc_head(d)["rayStartParams"].update({"num-cpus": 0}), "num-cpus"),
    "cron": ("RayCronJob", lambda d: d["spec"].update(schedule="0 27 * * *"), "cron"),
    "no-cluster": ("RayJob", lambda d: d["spec"].pop("clusterSelector"), "clusterSelector"),
    "ttl-without-shutdown": ("RayJob", lambda d: d["spec"].update(ttlSecondsAfterFinished=60), "ttl"),
    "deletion-strategy-cel": ("RayJob", lambda d: d["spec"].update(
        deletionStrategy={"onSuccess": {"policy": "DeleteSelf"}}), "deletionStrategy"),
    "managed-by-cel": ("RayJob", lambda d: d["spec"].update(managedBy="me"), "managedBy"),
    # built-in kinds, through kubernetes-validate
    "probe-typo": ("Deployment", lambda d: _container(d["spec"]["template"]["spec"])[
        "readinessProbe"].update(grpcc={}), "grpcc"),
    "pdb-type": ("PodDisruptionBudget", lambda d: d["spec"].update(minAvailable=[1]), "minAvailable"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validation_rejects_broken_manifests(case):
    kind, breaks, expect = BROKEN[case]
    doc = _one(kind, {"Deployment": "jobrec-serve", "RayCronJob": "jobrec-refresh"}.get(kind))
    breaks(doc)
    errors = validation_errors(doc)
    assert errors, f"{case}: accepted"
    assert any(expect.lower() in e.lower() for e in errors), errors


# -- shape and consistency -------------------------------------------------------------------


def test_raycluster_is_fault_tolerant_and_autoscaled():
    rc = _one("RayCluster")
    spec = rc["spec"]
    ft = spec["gcsFaultToleranceOptions"]
    redis_svc = _one("Service", "jobrec-redis")
    host, port = ft["redisAddress"].split(":")
    assert (
        host == redis_svc["metadata"]["name"] and int(port) == redis_svc["spec"]["ports"][0]["port"]
    )
    secret_ref = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    assert secret_ref["key"] in _one("Secret", secret_ref["name"])["stringData"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert {"gcs", "client"} <= {p["name"] for p in _container(head["template"]["spec"])["ports"]}
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = _container(groups["train-gpu"]["template"]["spec"])["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == gpu["requests"]["nvidia.com/gpu"] == "1"
    assert groups["train-gpu"]["minReplicas"] == 0 < groups["train-gpu"]["maxReplicas"]
    cpu = _container(groups["shards"]["template"]["spec"])["resources"]
    assert "nvidia.com/gpu" not in cpu["limits"]
    assert groups["shards"]["minReplicas"] >= 2
    # shards reload from the store anywhere: no node pinning
    for g in groups.values():
        assert "affinity" not in g["template"]["spec"] and "nodeName" not in g["template"]["spec"]


def test_store_is_configured_once_and_reaches_every_jobrec_container(monkeypatch):
    env = _store_env()
    from workers.store.store import StoreConfig

    cfg = StoreConfig(env["JOBREC_STORE"], endpoint=env.get("JOBREC_STORE_ENDPOINT"))
    assert cfg.uri.startswith("s3://")
    containers = []
    rc = _one("RayCluster")["spec"]
    for group in [rc["headGroupSpec"], *rc["workerGroupSpecs"]]:
        containers.append(_container(group["template"]["spec"]))
    containers.append(_container(_one("Deployment", "jobrec-serve")["spec"]["template"]["spec"]))
    for c in containers:
        refs = {next(iter(r.values()))["name"] for r in c["envFrom"]}
        assert {"jobrec-store", "jobrec-store-credentials"} <= refs, c["name"]
    # no manifest names the store a second time
    for f in MANIFESTS:
        assert f.read_text().count(env["JOBREC_STORE"]) == (f.name == "namespace.yaml")
    args = _parse(["refresh", "--postings=p", "--out=o"], monkeypatch)
    assert args.store == env["JOBREC_STORE"] and args.store_endpoint == env["JOBREC_STORE_ENDPOINT"]


def test_serve_deployment_service_pdb_and_hpa_agree(monkeypatch):
    dep, svc = _one("Deployment", "jobrec-serve"), _one("Service", "jobrec-serve")
    pdb, hpa = _one("PodDisruptionBudget"), _one("HorizontalPodAutoscaler")
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert (
        hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    )
    c = _container(pod["spec"])
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in port_names
    grpc_port = port_names["grpc"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["grpc"]["port"] == grpc_port  # native gRPC probes
    # readiness follows the shards (NOT_SERVING while one is missing); liveness the process
    assert c["readinessProbe"]["grpc"]["service"] == "jobrec.v1.RecommendationService"
    assert c["livenessProbe"]["grpc"].get("service", "") == ""
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {m["name"] for m in c["volumeMounts"]} <= {v["name"] for v in pod["spec"]["volumes"]}
    args = _parse([*c["command"][1:], *c["args"]], monkeypatch)
    assert args.command == "serve" and args.port == grpc_port and args.host == "0.0.0.0"
    assert args.metrics_port == port_names["metrics"]
    assert any(str(args.api_keys_file).startswith(m) for m in mounts)
    assert args.ray_address.startswith("ray://jobrec-ray-head-svc:")
    assert args.ray_namespace == "jobrec" and args.store == _store_env()["JOBREC_STORE"]


def _entrypoint(spec: dict, monkeypatch):
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "jobrec"
    return _parse(argv[1:], monkeypatch)


def test_refresh_and_training_run_on_the_shared_raycluster(monkeypatch):
    cluster = _one("RayCluster")["metadata"]["name"]
    cron = _one("RayCronJob", "jobrec-refresh")
    assert len(cron["spec"]["schedule"].split()) == 5
    job = cron["spec"]["jobTemplate"]
    assert job["clusterSelector"] == {"ray.io/cluster": cluster}
    args = _entrypoint(job, monkeypatch)
    assert args.command == "refresh" and args.store == _store_env()["JOBREC_STORE"]
    serve = _parse(
        _container(_one("Deployment", "jobrec-serve")["spec"]["template"]["spec"])["args"],
        monkeypatch,
    )
    assert args.shards == serve.shards  # the refresh builds the generation the frontends serve
    train = _one("RayJob")["spec"]
    assert train["clusterSelector"] == {"ray.io/cluster": cluster}
    targs = _entrypoint(train, monkeypatch)
    assert targs.command == "train" and targs.gpu
    assert str(targs.out) == str(serve.model)  # the frontend loads what training writes


def test_ranker_retraining_runs_daily_and_writes_what_the_frontends_load(monkeypatch):
    cron = _one("RayCronJob", "jobrec-train-ranker")
    assert len(cron["spec"]["schedule"].split()) == 5
    job = cron["spec"]["jobTemplate"]
    assert job["clusterSelector"] == {"ray.io/cluster": _one("RayCluster")["metadata"]["name"]}
    args = _entrypoint(job, monkeypatch)
    assert args.command == "train-ranker"
    serve = _parse(
        _container(_one("Deployment", "jobrec-serve")["spec"]["template"]["spec"])["args"],
        monkeypatch,
    )
    assert str(args.model) == str(serve.model)
    deploy = _entrypoint(_one("RayCronJob", "jobrec-match-deploy")["spec"]["jobTemplate"],
                         monkeypatch)
    assert str(args.out) == str(deploy.ranker)  # the day's generation gets what it promotes


def test_matching_is_deployed_daily_into_the_root_the_frontends_serve(monkeypatch):
    cron = _one("RayCronJob", "jobrec-match-deploy")
    job = cron["spec"]["jobTemplate"]
    assert len(cron["spec"]["schedule"].split()) == 5
    assert job["clusterSelector"] == {"ray.io/cluster": _one("RayCluster")["metadata"]["name"]}
    args = _entrypoint(job, monkeypatch)
    pod = _one("Deployment", "jobrec-serve")["spec"]["template"]["spec"]
    serve = _parse(_container(pod)["args"], monkeypatch)
    assert args.command == "match-deploy" and serve.match_root == args.match_root
    assert serve.match_wait and serve.seekers is None and serve.ranker is None
    # the job encodes as the frontends do: the same model and store (its lexical half)
    assert str(args.model) == str(serve.model) and args.store == serve.store
    # the shards (on the RayCluster's nodes) write their logs under the root: mounted there
    for group in _ray_pods():
        mounts = {m["mountPath"] for c in group["containers"] for m in c.get("volumeMounts", [])
                  if not m.get("readOnly")}
        assert any(str(args.match_root).startswith(m) for m in mounts)
    frontend_mounts = {m["mountPath"] for m in _container(pod)["volumeMounts"]}
    assert any(str(serve.match_root).startswith(m) for m in frontend_mounts)


def _ray_pods() -> list[dict]:
    spec = _one("RayCluster")["spec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in spec["workerGroupSpecs"]]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_no_tabs_or_placeholders(path):
    text = path.read_text()
    assert "\t" not in text
    assert "TODO" not in text and "FIXME" not in text
