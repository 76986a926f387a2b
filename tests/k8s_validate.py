"""Offline validation of Kubernetes manifests, as the API server and KubeRay would do it.

- ``ray.io`` kinds: against the ``openAPIV3Schema`` of the KubeRay CRDs copied into
  ``k8s/crds/`` (see its README), with unknown fields rejected (``kubectl apply`` uses
  strict field validation), plus the CEL ``x-kubernetes-validations`` rules that apply on
  create, and the operator's own cross-field checks (:func:`kuberay_errors`).
- built-in kinds: against Kubernetes' schemas through ``kubernetes-validate`` (offline).

The cross-field checks follow KubeRay's documented validation of RayCluster / RayJob /
RayCronJob specs (ray-project/kuberay, ray-operator/controllers/ray/utils/validation.go, and
the "GCS fault tolerance in KubeRay" guide of the Ray docs).
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).resolve().parent.parent / "k8s" / "crds"
K8S_VERSION = "1.33"  # the oldest Kubernetes jobrec supports (native gRPC probes: >= 1.24)

# DNS-1035 label: what KubeRay requires of RayCluster / RayJob names
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _strict(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever the API server would prune them."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) → strict JSON schema of every served CRD version in ``k8s/crds``."""
    out = {}
    for f in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                out[(f"{group}/{v['name']}", kind)] = _strict(v["schema"]["openAPIV3Schema"])
    return out


# -- CEL rules -------------------------------------------------------------------------------

_CEL_TOKEN = re.compile(r"has\(self\.(\w+)\)|&&|\|\||!|\(|\)|self in \[[^\]]*\]|\s+")


def _cel_to_python(rule: str) -> str | None:
    """The few CEL forms the KubeRay CRDs use (has(), &&, ||, !, ``self in [...]``)."""
    out, pos = [], 0
    for m in _CEL_TOKEN.finditer(rule):
        if m.start() != pos:
            return None
        tok = m.group(0)
        if m.group(1):
            out.append(f"({m.group(1)!r} in self)")
        elif tok == "&&":
            out.append(" and ")
        elif tok == "||":
            out.append(" or ")
        elif tok == "!":
            out.append(" not ")
        else:
            out.append(tok)
        pos = m.end()
    return "".join(out) if pos == len(rule) else None


def cel_errors(schema: dict, value: Any, path: str = "") -> list[str]:
    """Failed CEL rules of ``value``; transition rules (``oldSelf``) do not apply on create."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", ()):
        if "oldSelf" in rule["rule"]:
            continue
        expr = _cel_to_python(rule["rule"])
        if expr is None:
            errors.append(f"{path}: CEL rule not evaluated here: {rule['rule']}")
        elif not eval(expr, {"__builtins__": {}}, {"self": value}):  # noqa: S307  (own grammar)
            errors.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                errors += cel_errors(sub_schema, sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            errors += cel_errors(schema["items"], sub, f"{path}[{i}]")
    return errors


# -- KubeRay's cross-field checks ------------------------------------------------------------


def _env_names(container: dict) -> set[str]:
    return {e["name"] for e in container.get("env", ())}


def _group_errors(name: str, group: dict) -> list[str]:
    errors = []
    containers = group.get("template", {}).get("spec", {}).get("containers", [])
    if not containers:
        errors.append(f"{name}: needs at least one container")
    params = group.get("rayStartParams", {})
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and group.get(
        "resources"
    ):
        errors.append(f"{name}: resources in both rayStartParams and resources")
    if "labels" in params:
        errors.append(f"{name}: rayStartParams['labels'] is not supported, use labels")
    for key, val in group.get("labels", {}).items():
        if not _LABEL_KEY.match(key) or len(str(val)) > 63:
            errors.append(f"{name}: invalid label {key}={val}")
    for k, v in params.items():
        if not isinstance(v, str):
            errors.append(f"{name}: rayStartParams[{k}] must be a string, got {v!r}")
    return errors


def raycluster_spec_errors(spec: dict, annotations: dict | None = None) -> list[str]:
    """KubeRay's validation of a RayClusterSpec (also embedded in RayJob / RayService)."""
    annotations = annotations or {}
    head = spec["headGroupSpec"]
    errors = _group_errors("headGroupSpec", head)
    names = [g["groupName"] for g in spec.get("workerGroupSpecs", ())]
    if len(names) != len(set(names)):
        errors.append(f"worker group names must be unique: {names}")
    for g in spec.get("workerGroupSpecs", ()):
        errors += _group_errors(f"workerGroupSpecs[{g['groupName']}]", g)
        lo, hi = g.get("minReplicas", 0), g.get("maxReplicas", 2**31 - 1)
        if lo > hi:
            errors.append(f"{g['groupName']}: minReplicas {lo} > maxReplicas {hi}")
        if "replicas" in g and not lo <= g["replicas"] <= hi:
            errors.append(f"{g['groupName']}: replicas outside [minReplicas, maxReplicas]")
    if errors:
        return errors
    head_env = _env_names(head["template"]["spec"]["containers"][0])
    ft = spec.get("gcsFaultToleranceOptions")
    if annotations.get("ray.io/ft-enabled") and ft is not None:
        errors.append("ray.io/ft-enabled annotation and gcsFaultToleranceOptions are both set")
    if ft is None and "RAY_REDIS_ADDRESS" in head_env:
        errors.append("RAY_REDIS_ADDRESS set without gcsFaultToleranceOptions")
    if ft is not None:
        if head.get("rayStartParams", {}).get("redis-password"):
            errors.append("redis-password in rayStartParams with gcsFaultToleranceOptions")
        for env in ("REDIS_PASSWORD", "RAY_REDIS_ADDRESS"):
            if env in head_env:
                errors.append(f"{env} env var in the head with gcsFaultToleranceOptions")
        if annotations.get("ray.io/external-storage-namespace"):
            errors.append(
                "ray.io/external-storage-namespace annotation with gcsFaultToleranceOptions"
            )
        if ft.get("backend", "redis") == "redis" and not ft.get("redisAddress"):
            errors.append("gcsFaultToleranceOptions needs redisAddress")
    if head.get("rayStartParams", {}).get("redis-username") or "REDIS_USERNAME" in head_env:
        errors.append("redis username must go in gcsFaultToleranceOptions.redisUsername")
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    v2_env = [
        e for e in head["template"]["spec"]["containers"][0].get("env", ())
        if e["name"] == "RAY_enable_autoscaler_v2"
    ]  # fmt: skip
    if not autoscaling and any(e.get("value") in ("1", "true") for e in v2_env):
        errors.append("RAY_enable_autoscaler_v2 without enableInTreeAutoscaling")
    if autoscaling:
        for g in spec.get("workerGroupSpecs", ()):
            if g.get("suspend"):
                errors.append(f"{g['groupName']}: cannot be suspended with the autoscaler")
        version = (spec.get("autoscalerOptions") or {}).get("version")
        if version and v2_env:
            errors.append("autoscalerOptions.version and RAY_enable_autoscaler_v2 both set")
        if version == "v2" or any(e.get("value") in ("1", "true") for e in v2_env):
            for name, g in [
                ("head", head),
                *((g["groupName"], g) for g in spec.get("workerGroupSpecs", ())),
            ]:
                policy = g["template"]["spec"].get("restartPolicy")
                if policy not in (None, "Never"):
                    errors.append(f"{name}: restartPolicy must be Never with autoscaler v2")
    return errors


def rayjob_spec_errors(spec: dict, annotations: dict | None = None) -> list[str]:
    """KubeRay's validation of a RayJobSpec."""
    errors = []
    shutdown = bool(spec.get("shutdownAfterJobFinishes"))
    if spec.get("suspend") and not shutdown:
        errors.append("suspend needs shutdownAfterJobFinishes")
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    if ttl < 0:
        errors.append("ttlSecondsAfterFinished must be >= 0")
    if not shutdown and ttl > 0:
        errors.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
    selector = spec.get("clusterSelector") or {}
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode not in ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"):
        errors.append(f"unknown submissionMode {mode}")
    if "rayClusterSpec" not in spec and not selector:
        errors.append("one of rayClusterSpec or clusterSelector must be set")
    if selector:
        if not selector.get("ray.io/cluster"):
            errors.append("clusterSelector needs ray.io/cluster")
        if mode == "SidecarMode":
            errors.append("clusterSelector is not supported in SidecarMode")
        if spec.get("suspend"):
            errors.append("clusterSelector mode cannot be suspended")
        if shutdown:
            # not an operator error, but it would delete a cluster this job does not own
            errors.append("clusterSelector with shutdownAfterJobFinishes deletes a shared cluster")
    if mode == "InteractiveMode" and spec.get("backoffLimit", 0) > 0:
        errors.append("backoffLimit is incompatible with InteractiveMode")
    if mode != "InteractiveMode" and not spec.get("entrypoint"):
        errors.append("entrypoint is required")
    if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
        errors.append("activeDeadlineSeconds must be > 0")
    if spec.get("backoffLimit", 0) < 0:
        errors.append("backoffLimit must be >= 0")
    if spec.get("runtimeEnvYAML"):
        try:
            yaml.safe_load(spec["runtimeEnvYAML"])
        except yaml.YAMLError as exc:
            errors.append(f"runtimeEnvYAML is not YAML: {exc}")
    if "rayClusterSpec" in spec:
        errors += [
            f"rayClusterSpec: {e}"
            for e in raycluster_spec_errors(spec["rayClusterSpec"], annotations)
        ]
    return errors


def cron_errors(schedule: str) -> list[str]:
    """Standard 5-field cron (what KubeRay's cron.ParseStandard accepts, minus the @macros)."""
    fields = schedule.split()
    if len(fields) != 5:
        return [f"cron schedule needs 5 fields: {schedule!r}"]
    errors = []
    for text, (lo, hi) in zip(fields, _CRON_RANGES, strict=True):
        if not _CRON_FIELD.match(text):
            errors.append(f"bad cron field {text!r}")
            continue
        for n in map(int, re.findall(r"\d+", re.sub(r"/\d+", "", text))):
            if not lo <= n <= hi:
                errors.append(f"cron value {n} outside {lo}..{hi}")
    return errors


def kuberay_errors(doc: dict) -> list[str]:
    """The operator's cross-field checks for a ray.io document."""
    kind, meta = doc["kind"], doc["metadata"]
    errors = []
    if not _DNS1035.match(meta["name"]) or len(meta["name"]) > 63:
        errors.append(f"{kind} name {meta['name']!r} is not a DNS-1035 label")
    ann = meta.get("annotations", {})
    if kind == "RayCluster":
        errors += raycluster_spec_errors(doc["spec"], ann)
    elif kind == "RayJob":
        errors += rayjob_spec_errors(doc["spec"], ann)
    elif kind == "RayCronJob":
        errors += cron_errors(doc["spec"]["schedule"])
        errors += [f"jobTemplate: {e}" for e in rayjob_spec_errors(doc["spec"]["jobTemplate"], ann)]
    return errors


def validation_errors(doc: dict) -> list[str]:
    """Every problem the API server or the KubeRay operator would report for ``doc``."""
    api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if api.startswith("ray.io/"):
        schema = crd_schemas().get((api, kind))
        if schema is None:
            return [f"no CRD schema for {api} {kind}"]
        validator = jsonschema.Draft7Validator(schema)
        errors = [
            f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
        if errors:
            return errors
        return cel_errors(schema, doc) + kuberay_errors(doc)
    import kubernetes_validate as kv

    try:
        kv.validate(copy.deepcopy(doc), K8S_VERSION, strict=True)
    except kv.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [f"no Kubernetes schema for {api} {kind}: {exc}"]
    return []
