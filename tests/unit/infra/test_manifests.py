"""stack.yml and the Knative manifests validate against the real CRD schemas, offline."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from finfaas.platform.schedule import SCHEDULE_KEY_SECRET_NAME
from finfaas_dev.build import (
    KNATIVE_DIR,
    OPENFAAS_DIR,
    SCHEDULE_ANNOTATION,
    knative_manifests,
    load_stack,
    openfaas_schedule_manifests,
)

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT.parent / "shared" / "schemas"
STACK = load_stack(ROOT / "stack.yml")


def _crd_schema(file_name: str) -> dict:
    path = SCHEMAS / file_name
    if not path.exists():
        pytest.skip(f"{path} not present")
    crd = yaml.safe_load(path.read_text())
    return _closed(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _closed(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected (the API server prunes them silently, hiding typos)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def _openfaas_function(name: str, fn: dict) -> dict:
    """The Function custom resource `faas-cli generate` makes from a stack.yml entry."""
    spec = {"name": name, "image": fn["image"]}
    for key in ("labels", "annotations", "environment", "secrets"):
        if fn.get(key):
            spec[key] = fn[key]
    return {"apiVersion": "openfaas.com/v1", "kind": "Function", "metadata": {"name": name}, "spec": spec}


def test_every_function_is_python3_http_and_scales_to_zero():
    for name, fn in STACK["functions"].items():
        assert fn["lang"] == "python3-http", name
        assert fn["labels"]["com.openfaas.scale.zero"] == "true", name
        assert (ROOT / fn["handler"] / "handler.py").is_file(), name


def test_only_the_runtime_package_reaches_every_build_context():
    copied = STACK["configuration"]["copy"]
    assert "./shared/finfaas" in copied
    assert not any(Path(path) in (Path("shared"), Path("shared/finfaas_dev")) for path in copied)


@pytest.mark.parametrize("name", sorted(STACK["functions"]))
def test_stack_function_validates_against_openfaas_crd(name):
    schema = _crd_schema("openfaas-function-crd.yaml")
    jsonschema.validate(_openfaas_function(name, STACK["functions"][name]), schema)


def test_openfaas_crd_rejects_a_non_string_label():
    # GIVEN a label written as a YAML boolean, a common stack.yml mistake
    schema = _crd_schema("openfaas-function-crd.yaml")
    fn = copy.deepcopy(next(iter(STACK["functions"].values())))
    fn["labels"]["com.openfaas.scale.zero"] = True
    # THEN the schema refuses it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_openfaas_function("x", fn), schema)


def test_knative_manifests_are_generated_from_stack_and_up_to_date():
    expected = knative_manifests(STACK)
    on_disk = {p.name: p.read_text() for p in (ROOT / KNATIVE_DIR).glob("*.yaml")}
    assert on_disk == expected, "run `finfaas build --knative` after editing stack.yml"


KNATIVE_SERVICES = sorted(f"{name}.yaml" for name in STACK["functions"])


@pytest.mark.parametrize("file_name", KNATIVE_SERVICES)
def test_knative_service_validates_against_crd_and_scales_to_zero(file_name):
    schema = _crd_schema("knative-serving-service-crd.yaml")
    manifest = yaml.safe_load((ROOT / KNATIVE_DIR / file_name).read_text())
    jsonschema.validate(manifest, schema)
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"


def test_every_function_trusts_the_one_address_header_its_edge_sets():
    # OpenFaaS (behind an ingress, or the local gateway): X-Real-Ip; Knative (Kourier/Istio): Envoy's.
    for name, fn in STACK["functions"].items():
        assert fn["environment"]["FINFAAS_CLIENT_IP_HEADER"] == "X-Real-Ip", name
    for file_name in KNATIVE_SERVICES:
        manifest = yaml.safe_load((ROOT / KNATIVE_DIR / file_name).read_text())
        [container] = manifest["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["FINFAAS_CLIENT_IP_HEADER"] == "X-Envoy-External-Address", file_name


def test_knative_schema_rejects_a_misspelt_field():
    schema = _crd_schema("knative-serving-service-crd.yaml")
    manifest = yaml.safe_load(next(iter(knative_manifests(STACK).values())))
    manifest["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)


def test_openfaas_schedules_are_generated_from_stack_and_up_to_date():
    on_disk = {p.name: p.read_text() for p in (ROOT / OPENFAAS_DIR).glob("*.yaml")}
    expected = openfaas_schedule_manifests(STACK)
    assert on_disk == expected, "run `finfaas build --schedules` after editing stack.yml"


SCHEDULES = [(OPENFAAS_DIR, "openfaas-fn", "http://gateway.openfaas:8080/function/relay"),
             (KNATIVE_DIR, "finfaas", "http://relay.finfaas.svc.cluster.local")]


@pytest.mark.parametrize(("folder", "namespace", "url"), SCHEDULES)
def test_the_relay_is_ticked_by_a_cronjob_that_signs_with_the_schedule_key(folder, namespace, url):
    # The relay refuses unsigned calls, and no stock scheduler signs: without this CronJob the outbox
    # would never be published on a cluster.
    cronjob = yaml.safe_load((ROOT / folder / "relay-schedule.yaml").read_text())

    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    assert cronjob["metadata"]["namespace"] == namespace  # beside the function's secrets
    spec = cronjob["spec"]
    assert spec["schedule"] == STACK["functions"]["relay"]["annotations"][SCHEDULE_ANNOTATION]
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == STACK["functions"]["relay"]["image"]
    assert container["command"] == ["python", "-m", "finfaas.platform.schedule", "relay", url]
    [volume] = pod["volumes"]
    assert volume["secret"]["secretName"] == SCHEDULE_KEY_SECRET_NAME
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/var/openfaas/secrets",
                                          "readOnly": True}]
    assert pod["restartPolicy"] == "Never"


def test_no_function_relies_on_the_unsigned_cron_connector():
    for name, fn in STACK["functions"].items():
        annotations = fn.get("annotations") or {}
        assert annotations.get("topic") != "cron-function", name

