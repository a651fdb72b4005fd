"""packaging/kubernetes/: the manifests are valid against the Kubernetes API schemas
(kubernetes-validate, strict: no field the API does not know), and they fit together and with
the farm: the worker's grace outlasts its stop, KEDA scales the worker Deployment on the metric
the gateways export, down to zero. No cluster runs here (packaging/kubernetes/README.md)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from farmtools import require_module

ROOT = Path(__file__).resolve().parents[2] / "packaging" / "kubernetes"
KUBERNETES = "1.30.0"  # a version GKE and EKS both run


def documents() -> list[dict]:
    docs = [d for path in sorted(ROOT.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"no manifests in {ROOT}"
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d["kind"] == kind]


@pytest.mark.parametrize("doc", [d for d in documents() if d["apiVersion"] != "keda.sh/v1alpha1"],
                         ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_each_manifest_is_valid_for_the_kubernetes_api(doc):
    require_module("kubernetes_validate", "kubernetes-validate")
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_strict_check_can_fail():
    require_module("kubernetes_validate", "kubernetes-validate")
    import kubernetes_validate

    bad = by_kind("Deployment")[0]
    bad = {**bad, "spec": {**bad["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES, strict=True)


def test_the_pieces_fit_together():
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    gateway, worker = deployments["framefarm-gateway"], deployments["framefarm-worker"]
    for d in deployments.values():
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    service = by_kind("Service")[0]
    assert service["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()
    port = gateway["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"} and port == 8400

    from framefarm.worker import agent

    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= agent.STOP_S + 10, \
        "the worker must have time to hand its part back before it is killed"

    scaled = by_kind("ScaledObject")[0]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "framefarm-worker" and scaled["minReplicaCount"] == 0
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == "max(framefarm_queued_work_seconds)"
    assert float(trigger["metadata"]["threshold"]) > 0


def test_the_scaling_metric_is_one_the_gateways_export(http):
    scaled = by_kind("ScaledObject")[0]["spec"]
    metric = scaled["triggers"][0]["metadata"]["query"].removeprefix("max(").removesuffix(")")
    scraped = http.get("/metrics").get_data(as_text=True)
    assert f"\n{metric} 0.0\n" in scraped, "an idle farm reports no work: KEDA scales the workers to zero"
