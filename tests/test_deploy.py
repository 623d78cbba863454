"""The Kubernetes and KServe manifests: valid against the Kubernetes schemas (kubernetes-validate, pinned
version), and naming only probe paths, ports and settings the service really has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.app import create_app
from service.config import Settings
from tests.support import ROOT

KUBERNETES_VERSION = "1.32.0"
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "Deployment":
        found: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
        return found
    if doc["kind"] == "InferenceService":
        found = doc["spec"]["predictor"]["containers"]
        return found
    return []


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def served_paths() -> set[str]:
    """Every path the app serves and documents, read from the app itself."""
    return set(create_app(Settings()).openapi()["paths"])


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(path: Path) -> None:
    for doc in documents(path):
        if doc["kind"] == "Kustomization":
            assert {r for r in doc["resources"]} <= {p.name for p in K8S.glob("*.yaml")}
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_deployment_matches_the_service() -> None:
    [deployment] = documents(K8S / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    settings, names = env(container), set(Settings.model_fields)
    assert all(k.startswith("SENTIMENT_") and k.removeprefix("SENTIMENT_").lower() in names for k in settings)
    port = int(settings["SENTIMENT_PORT"])
    assert container["ports"][0]["containerPort"] == port
    paths = served_paths()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # SIGTERM comes after preStop; the pod must live through the preStop sleep and the server's own drain.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + float(settings["SENTIMENT_SHUTDOWN_GRACE_S"])
    # CPU limit = inference workers x onnxruntime threads each
    threads = int(settings["SENTIMENT_INFERENCE_WORKERS"]) * int(settings["SENTIMENT_INTRA_OP_THREADS"])
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"] == str(threads)
    assert settings["SENTIMENT_API_KEY"]["secretKeyRef"]["name"] == "sentiment-api-key"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"]


def test_the_kserve_service_speaks_the_v2_protocol_on_its_port() -> None:
    [isvc] = documents(KSERVE)
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    [container] = containers(isvc)
    settings, names = env(container), set(Settings.model_fields)
    assert all(k.removeprefix("SENTIMENT_").lower() in names for k in settings)
    assert container["ports"][0]["containerPort"] == int(settings["SENTIMENT_PORT"]) == 8080
    paths = served_paths()
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready" in paths
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live" in paths
    assert "/v2/models/{name}/infer" in paths
    # the container part is a plain Kubernetes container: validate it as one inside a Pod
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
