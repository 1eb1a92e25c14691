"""The Kubernetes manifests validate against the Kubernetes schemas, offline, and agree with the
relay (its settings, its probe paths)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from relay.http.app import PUBLIC
from relay.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).parent / "kubernetes_schemas"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def _schema_name(doc: dict[str, Any]) -> str:
    group_version = doc["apiVersion"]
    group, _, version = group_version.rpartition("/")
    group = group.split(".")[0]
    suffix = f"{group}-{version}" if group else version
    return f"{doc['kind'].lower()}-{suffix}.json"


def _validator(schema_file: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_file.read_text())
    definitions = json.loads((SCHEMAS / "_definitions.json").read_text())
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize(
    ("name", "doc"), _documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_manifest_matches_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    schema_file = SCHEMAS / _schema_name(doc)
    assert schema_file.exists(), f"{name}: no schema for {doc['apiVersion']} {doc['kind']}"
    errors = sorted(_validator(schema_file).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
    )


def test_schema_validation_can_fail() -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "three", "selector": {}, "template": {}, "surprise": 1},
    }
    assert list(_validator(SCHEMAS / "deployment-apps-v1.json").iter_errors(bad))


def test_the_set_is_complete_and_consistent() -> None:
    docs = [doc for _, doc in _documents()]
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "PodDisruptionBudget",
        "Ingress",
    } <= kinds
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"
    )

    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in PUBLIC

    config = next(d for d in docs if d["kind"] == "ConfigMap")
    raw = tomllib.loads(config["data"]["relay.toml"])
    keys = raw.pop("jwt_keys")
    assert [k["kid"] for k in keys] == ["current", "previous"]
    settings = Settings.from_mapping(
        {**raw, "database_url": "postgresql://relay@postgres:5432/driftsync"}
    )
    settings.validate()
    assert settings.port == container["ports"][0]["containerPort"]
