"""stack.yml and the Knative target's manifests validate against the real CRD schemas, offline."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml
from finfaas.platform.config import function_url_env
from finfaas.platform.schedule import SCHEDULE_KEY_SECRET_NAME
from finfaas_dev import knative, targets
from finfaas_dev.build import load_stack
from finfaas_dev.schedules import CRON_TOPIC, SCHEDULE_ANNOTATION, schedule_of

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT.parent / "shared" / "schemas"
STACK = load_stack(ROOT / "stack.yml")
KNATIVE = targets.load_settings(targets.KNATIVE, ROOT)
OPENFAAS = targets.load_settings(targets.OPENFAAS, ROOT)
KNATIVE_DIR = ROOT / knative.KNATIVE_DIR


@cache
def _crd_schema(file_name: str) -> dict:
    """Parsed once per file (the Knative Service CRD is 116 kB of YAML); callers only read it."""
    path = SCHEMAS / file_name
    if not path.exists():
        pytest.skip(f"{path} not present")
    crd = yaml.safe_load(path.read_text())
    return _closed(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _closed(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected (the API server prunes them silently, hiding typos).

    An object that lists its properties is closed even where the CRD preserves unknown fields (Knative
    Eventing's Trigger spec and delivery): there a typo is kept, and ignored, instead of pruned."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
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


# CRD file, and whether only `spec` is described (Knative Eventing's schemas list spec and status only).
CRD_OF_KIND = {
    "Service": ("knative-serving-service-crd.yaml", False),
    "Broker": ("knative-eventing-broker-crd.yaml", True),
    "Trigger": ("knative-eventing-trigger-crd.yaml", True),
    "IntegrationSource": ("knative-eventing-integrationsource-crd.yaml", True),
    "PingSource": ("knative-eventing-pingsource-crd.yaml", True),
}
BUILTIN_KINDS = {"ConfigMap"}  # checked by the tests below, not by a CRD here


def _validate(document: dict) -> None:
    """Against its kind's CRD schema with unknown fields rejected; a kind without one is an error."""
    kind = document["kind"]
    if kind in BUILTIN_KINDS:
        return
    file_name, spec_only = CRD_OF_KIND[kind]
    # As jsonschema.validate reports, without checking the same schema again for every document.
    error = jsonschema.exceptions.best_match(
        _crd_validator(file_name, spec_only).iter_errors(document["spec"] if spec_only else document))
    if error is not None:
        raise error


@cache
def _crd_validator(file_name: str, spec_only: bool):
    """The kind's schema (its spec's alone where the CRD describes only spec), checked once."""
    schema = _crd_schema(file_name)
    if spec_only:
        schema = schema["properties"]["spec"]
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def _generated_tree() -> dict[str, str]:
    return {str(p.relative_to(KNATIVE_DIR)): p.read_text() for p in KNATIVE_DIR.rglob("*.yaml")}


BASE_FILES = sorted(yaml.safe_load((KNATIVE_DIR / "base" / "kustomization.yaml").read_text())["resources"])


def _base() -> list[dict]:
    return [yaml.safe_load((KNATIVE_DIR / knative.BASE / name).read_text()) for name in BASE_FILES]


def _of_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_knative_target_is_generated_from_stack_and_settings_and_up_to_date():
    expected = knative.knative_manifests(STACK, KNATIVE)
    assert _generated_tree() == expected, "run `finfaas build --knative` after editing stack.yml or settings"


@pytest.mark.parametrize("file_name", BASE_FILES)
def test_every_base_manifest_validates_against_its_crd(file_name):
    _validate(yaml.safe_load((KNATIVE_DIR / "base" / file_name).read_text()))


def test_a_misspelt_field_fails_validation_in_every_kind():
    # GIVEN one document of each kind the base has, each with a typo in its spec
    for kind, document in {d["kind"]: d for d in _base()}.items():
        if kind in BUILTIN_KINDS:
            continue
        broken = copy.deepcopy(document)
        broken["spec"]["colour"] = "typo"
        # THEN validation refuses it (the API server would prune it silently)
        with pytest.raises(jsonschema.ValidationError):
            _validate(broken)


def _kustomized(overlay: str) -> list[dict] | None:
    """`kustomize build` of an overlay, as `kubectl apply -k` renders it; None without kubectl."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    text = subprocess.run([kubectl, "kustomize", str(KNATIVE_DIR / "overlays" / overlay)],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def _merged(overlay: str) -> list[dict]:
    """The overlay applied by hand, for machines without kubectl: only the four kustomize features the
    generator uses (namespace, images, a ConfigMap patch merging `data`, JSON patches that replace)."""
    folder = KNATIVE_DIR / "overlays" / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    documents = copy.deepcopy(_base())
    images = {image["name"]: f"{image['newName']}:{image['newTag']}" for image in kustomization["images"]}
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    for patch in kustomization["patches"]:
        if "path" in patch:
            change = yaml.safe_load((folder / patch["path"]).read_text())
            by_key[change["kind"], change["metadata"]["name"]]["data"].update(change["data"])
            continue
        target = by_key[patch["target"]["kind"], patch["target"]["name"]]
        for operation in json.loads(patch["patch"]):
            assert operation["op"] == "replace"
            *parents, last = operation["path"].strip("/").split("/")
            node = target
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[int(last) if isinstance(node, list) else last] = operation["value"]
    for document in documents:
        document["metadata"]["namespace"] = kustomization["namespace"]
        for container in _containers(document):
            container["image"] = images.get(container["image"].rsplit(":", 1)[0], container["image"])
    return documents


def _containers(document: dict) -> list[dict]:
    spec = document.get("spec") or {}
    return ((spec.get("template") or {}).get("spec") or {}).get("containers") or []


def _rendered(overlay: str) -> list[dict]:
    return _kustomized(overlay) or _merged(overlay)


@pytest.mark.parametrize("overlay", sorted(KNATIVE.overlays))
def test_the_hand_merge_agrees_with_kustomize(overlay):
    # Where kubectl is missing (it may be, in CI) the overlay tests use _merged: it must render the same.
    kustomized = _kustomized(overlay)
    if kustomized is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")

    def keyed(documents):
        return {(d["kind"], d["metadata"]["name"]): d for d in documents}

    assert keyed(_merged(overlay)) == keyed(kustomized)


@pytest.mark.parametrize("overlay", sorted(KNATIVE.overlays))
def test_each_overlay_renders_into_its_namespace_registry_stage_and_queues(overlay):
    settings = KNATIVE.overlays[overlay]
    documents = _rendered(overlay)
    for document in documents:
        _validate(document)
        assert document["metadata"]["namespace"] == settings.namespace, document["metadata"]["name"]
    # every function's image from the overlay's registry and tag
    services = _of_kind(documents, "Service")
    assert sorted(services) == sorted(STACK["functions"])
    for name, service in services.items():
        [container] = service["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{settings.image_registry}/{name}:{settings.image_tag}"
    # the stage, and every function's (and the JWKS's) address in this namespace
    [config] = _of_kind(documents, "ConfigMap").values()
    assert config["data"]["FINFAAS_STAGE"] == settings.stage
    assert config["data"]["FINFAAS_JWKS_URL"] == (
        f"http://auth.{settings.namespace}.svc.cluster.local/.well-known/jwks.json")
    for name in STACK["functions"]:
        assert config["data"][function_url_env(name)] == f"http://{name}.{settings.namespace}.svc.cluster.local"
    # each queue of the stage, in the overlay's account
    for source in _of_kind(documents, "IntegrationSource").values():
        topic = source["spec"]["ceOverrides"]["extensions"][knative.QUEUE_EXTENSION]
        assert source["spec"]["aws"]["sqs"]["arn"] == (
            f"arn:aws:sqs:{KNATIVE.aws_region}:{settings.aws_account_id}:finfaas-{settings.stage}-{topic}")
    # schedule ticks go to the Service of the same name, in this namespace (a sink ref without one)
    pings = _of_kind(documents, "PingSource")
    assert sorted(pings) == [f"{name}-schedule" for name in SCHEDULED]
    for ping in pings.values():
        assert "namespace" not in ping["spec"]["sink"]["ref"]


def test_no_knative_manifest_assumes_a_gateway():
    # A Knative-only cluster has no OpenFaaS gateway: calls, tokens and the JWKS go to the Services.
    for relative, text in _generated_tree().items():
        assert "gateway" not in text.lower(), relative
    for service in _of_kind(_base(), "Service").values():
        [container] = service["spec"]["template"]["spec"]["containers"]
        names = {item["name"] for item in container["env"]}
        assert not names & set(knative.TARGET_VARIABLES), "env would hide the overlay's ConfigMap"
        assert container["envFrom"] == [{"configMapRef": {"name": knative.TARGET_CONFIG}}]


def test_every_queue_subscription_is_fed_from_sqs_with_retries_and_a_dead_letter_sink():
    documents = _base()
    sources = {s["spec"]["ceOverrides"]["extensions"][knative.QUEUE_EXTENSION]: s
               for s in _of_kind(documents, "IntegrationSource").values()}
    triggers = _of_kind(documents, "Trigger")
    brokers = _of_kind(documents, "Broker")
    subscriptions = {(name, topic) for name, fn in STACK["functions"].items() for topic in knative.topics(fn)}
    assert subscriptions, "stack.yml has queue-driven functions"
    queue = knative.QUEUE_EXTENSION
    fed = {(t["spec"]["subscriber"]["ref"]["name"], t["spec"]["filter"]["attributes"][queue])
           for t in triggers.values()}
    assert fed == subscriptions
    for name, topic in subscriptions:
        source = sources[topic]
        assert source["spec"]["sink"]["ref"]["name"] == knative.QUEUES_BROKER
        assert source["spec"]["aws"]["sqs"]["arn"].endswith(f":finfaas-local-{topic}")
        trigger = triggers[f"{name}-{topic}"]
        assert trigger["spec"]["broker"] == knative.QUEUES_BROKER
        delivery = trigger["spec"]["delivery"]
        assert delivery["retry"] >= 1
        assert delivery["deadLetterSink"]["ref"]["name"] == knative.DEAD_LETTER_BROKER
    assert set(brokers) == {knative.QUEUES_BROKER, knative.DEAD_LETTER_BROKER}


def test_every_function_trusts_the_one_address_header_its_edge_sets():
    # OpenFaaS (behind an ingress, or the local gateway): X-Real-Ip; Knative (Kourier/Istio): Envoy's.
    for name, fn in STACK["functions"].items():
        assert fn["environment"]["FINFAAS_CLIENT_IP_HEADER"] == OPENFAAS.client_ip_header == "X-Real-Ip", name
    for service in _of_kind(_base(), "Service").values():
        [container] = service["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["FINFAAS_CLIENT_IP_HEADER"] == "X-Envoy-External-Address", service["metadata"]["name"]


def test_stack_environment_is_what_the_openfaas_settings_say():
    gateway = OPENFAAS.gateway_url
    for name, fn in STACK["functions"].items():
        env = fn["environment"]
        assert env["FINFAAS_GATEWAY_URL"] == gateway, name
        assert env["FINFAAS_JWKS_URL"] == f"{gateway}/function/auth/.well-known/jwks.json", name
        assert env["AWS_XRAY_DAEMON_ADDRESS"] == OPENFAAS.xray_daemon_address, name
        # OpenFaaS: every call between functions goes through the gateway
        assert not any(key.startswith("FINFAAS_FUNCTION_URL_") for key in env), name


def test_queue_functions_subscribe_with_the_connector_convention_one_queue_per_topic():
    template = (ROOT / "infra" / "template.yaml").read_text()
    seen: dict[str, str] = {}
    for name, fn in STACK["functions"].items():
        for topic in knative.topics(fn):
            assert topic not in seen, f"{topic} consumed by {seen.get(topic)} and {name}: one queue per topic"
            seen[topic] = name
            assert f"QueueName: !Sub finfaas-${{Stage}}-{topic}\n" in template, topic
            assert "events-hmac-key" in fn["secrets"], f"{name} opens sealed queue messages"
    assert set(seen) == {"reviews", "rail", "events", "webhooks", "orchestrator", "loan-reviews"}


SCHEDULED = sorted(name for name, fn in STACK["functions"].items()
                   if schedule_of(fn.get("annotations") or {}))


def test_the_relay_hold_and_capture_expiry_are_scheduled_with_the_cron_connector_convention():
    assert SCHEDULED == ["ledger", "loans", "payments", "relay", "wealth"]
    for name in SCHEDULED:
        annotations = STACK["functions"][name]["annotations"]
        # OpenFaaS CE's cron-connector reads a function only if `topic` is exactly cron-function; loans
        # is also fed by a queue (the SQS connector, OpenFaaS Pro, whose cron-connector reads a list)
        topics = [t.strip() for t in annotations["topic"].split(",")]
        assert topics == ([CRON_TOPIC, "loan-reviews"] if name == "loans" else [CRON_TOPIC]), name
        # the loans nightly job's tick only starts (or finds) the date's execution: every 15 minutes
        assert annotations[SCHEDULE_ANNOTATION] == ("*/15 * * * *" if name == "loans" else "* * * * *"), name
    # signed ticks (by hand) need the key; nobody else holds it
    holders = sorted(n for n, fn in STACK["functions"].items() if SCHEDULE_KEY_SECRET_NAME in fn["secrets"])
    assert holders == SCHEDULED


@pytest.mark.parametrize("name", SCHEDULED)
def test_a_scheduled_function_is_ticked_by_a_ping_source_to_its_own_service(name):
    # Without it the outbox would never be published, nor holds and authorizations expired, on Knative.
    ping = yaml.safe_load((KNATIVE_DIR / "base" / f"{name}-schedule.yaml").read_text())

    _validate(ping)
    assert (ping["apiVersion"], ping["kind"]) == ("sources.knative.dev/v1", "PingSource")
    assert ping["metadata"]["namespace"] == KNATIVE.base_namespace
    assert ping["spec"]["schedule"] == STACK["functions"][name]["annotations"][SCHEDULE_ANNOTATION]
    assert ping["spec"]["sink"] == {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                            "name": name}}
    # no data: the route reads none, and a constant in a manifest would prove nothing
    assert not {"data", "dataBase64", "ceOverrides"} & set(ping["spec"])


def test_no_knative_manifest_runs_a_job_or_a_cronjob():
    # The stock scheduler ticks the functions: nothing runs a function's image outside its Service.
    kinds = {d["kind"] for d in _base()}
    assert not kinds & {"CronJob", "Job"}
    assert not (ROOT / "infra" / "openfaas").exists(), "on OpenFaaS the cron-connector ticks (stack.yml)"


def test_the_console_links_its_pages_from_the_root_of_its_knative_service():
    # On OpenFaaS the gateway serves it under /function/console; a Knative Service at its own host's root.
    service = knative.knative_service("console", STACK["functions"]["console"], KNATIVE)

    env = {e["name"]: e.get("value") for e in service["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert STACK["functions"]["console"]["environment"]["FINFAAS_CONSOLE_BASE_PATH"] == "/function/console"
    assert env["FINFAAS_CONSOLE_BASE_PATH"] == "/"
