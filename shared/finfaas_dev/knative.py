"""The Knative target: a kustomize base and one overlay per deployment, from stack.yml and its settings.

    infra/knative/base/           one Service per function, the target ConfigMap (stage, addresses),
                                  the queue feed (IntegrationSource per SQS queue -> Broker -> Trigger
                                  per subscription, retries, dead-letter Broker), a PingSource per
                                  scheduled function
    infra/knative/overlays/<o>/   namespace, image registry and tag, stage, queue ARNs, addresses

`finfaas build --knative` writes them (infra/targets/knative.yaml says what varies); a test keeps the
committed files equal to what it would write. Nothing here assumes an OpenFaaS gateway: each function
reaches the others, and the JWKS, at their Services' cluster addresses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from finfaas.platform.config import function_url_env

from finfaas_dev.schedules import CRON_TOPIC, schedule_of
from finfaas_dev.targets import KnativeOverlay, KnativeSettings

KNATIVE_DIR = Path("infra/knative")
BASE, OVERLAYS = "base", "overlays"
HEADER = ("# Generated from stack.yml and infra/targets/knative.yaml by `finfaas build --knative`;"
          " do not edit.\n")
CONTAINER_PORT = 8080  # of-watchdog listens here inside the python3-http image
SECRETS_MOUNT = "/var/openfaas/secrets"  # same path as OpenFaaS, so config.read_secret works unchanged
MAX_SCALE_DEFAULT = "20"
TARGET_CONCURRENCY_DEFAULT = "50"
SCALE_DOWN_DELAY_DEFAULT = "0s"
PART_OF = {"app.kubernetes.io/part-of": "finfaas"}
TARGET_CONFIG = "finfaas-target"  # the ConfigMap of what differs per overlay
QUEUES_BROKER = "finfaas-queues"
DEAD_LETTER_BROKER = "finfaas-dead-letters"
QUEUE_EXTENSION = "finfaasqueue"  # set on every event from a queue; Triggers filter on it
BROKER_CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
KAFKA_BROKER_CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "name": "kafka-broker-config",
                       "namespace": "knative-eventing"}
SQS_WAIT_SECONDS = 20  # long polls: the cheapest way to read an idle queue
SQS_MESSAGES_PER_POLL_MAX = 10  # SQS's own limit
TOPIC_ANNOTATION = "topic"
# Set per overlay through the ConfigMap, never in a Service's own env (env would win over envFrom).
TARGET_VARIABLES = ("FINFAAS_STAGE", "FINFAAS_GATEWAY_URL", "FINFAAS_JWKS_URL")
JWKS_PATH = "/.well-known/jwks.json"
# The console links its pages under the path the gateway serves it at; a Knative Service serves it at the
# root of its own host.
CONSOLE_BASE_PATH_VARIABLE = "FINFAAS_CONSOLE_BASE_PATH"
BROKER_API = "eventing.knative.dev/v1"
SOURCES_API = "sources.knative.dev/v1"
SERVING_API = "serving.knative.dev/v1"


def cluster_url(function: str, namespace: str) -> str:
    """A Knative Service's cluster address."""
    return f"http://{function}.{namespace}.svc.cluster.local"


def topics(fn: dict) -> list[str]:
    """The queues a function consumes (the cron-connector's topic is a schedule, not a queue)."""
    raw = str((fn.get("annotations") or {}).get(TOPIC_ANNOTATION, ""))
    return [t.strip() for t in raw.split(",") if t.strip() and t.strip() != CRON_TOPIC]


def target_config_data(stack: dict, region: str, stage: str, namespace: str) -> dict[str, str]:
    """Stage, region and every function's address (and the JWKS) in this namespace."""
    data = {"AWS_REGION": region, "FINFAAS_STAGE": stage,
            "FINFAAS_JWKS_URL": cluster_url("auth", namespace) + JWKS_PATH}
    for name in sorted(stack["functions"]):
        data[function_url_env(name)] = cluster_url(name, namespace)
    return dict(sorted(data.items()))


def target_config(stack: dict, settings: KnativeSettings) -> dict:
    stage = _base_stage(stack)
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": TARGET_CONFIG, "namespace": settings.base_namespace, "labels": PART_OF},
        "data": target_config_data(stack, settings.aws_region, stage, settings.base_namespace),
    }


BASE_ACCOUNT_ID = "000000000000"  # the base is never applied as it is: an overlay names the account


def _base_stage(stack: dict) -> str:
    """The stage stack.yml names (its default): the base's, until an overlay sets its own."""
    first = stack["functions"][next(iter(stack["functions"]))]
    return str((first.get("environment") or {}).get("FINFAAS_STAGE", "local"))


def knative_service(name: str, fn: dict, settings: KnativeSettings) -> dict:
    """A Knative Service that scales to zero, with the function's env, the target ConfigMap and secrets."""
    environment = {k: v for k, v in (fn.get("environment") or {}).items() if k not in TARGET_VARIABLES}
    environment.update({"FINFAAS_CLIENT_IP_HEADER": settings.client_ip_header,
                        "AWS_XRAY_DAEMON_ADDRESS": settings.xray_daemon_address})
    if CONSOLE_BASE_PATH_VARIABLE in environment:
        environment[CONSOLE_BASE_PATH_VARIABLE] = "/"
    env = [{"name": k, "value": str(v)} for k, v in sorted(environment.items())]
    secrets = fn.get("secrets") or []
    container: dict = {
        "name": "function",
        "image": fn["image"],
        "ports": [{"containerPort": CONTAINER_PORT}],
        "env": env,
        "envFrom": [{"configMapRef": {"name": TARGET_CONFIG}}],
        "readinessProbe": {"httpGet": {"path": "/_/ready", "port": CONTAINER_PORT}},
        "livenessProbe": {"httpGet": {"path": "/_/health", "port": CONTAINER_PORT}},
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
    }
    spec: dict = {"containers": [container]}
    if secrets:
        container["volumeMounts"] = [{"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}]
        spec["volumes"] = [
            {"name": "secrets", "projected": {"sources": [{"secret": {"name": s}} for s in secrets]}}
        ]
    labels = fn.get("labels") or {}
    annotations = {
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": labels.get("com.openfaas.scale.max", MAX_SCALE_DEFAULT),
        "autoscaling.knative.dev/target": TARGET_CONCURRENCY_DEFAULT,
        "autoscaling.knative.dev/scale-down-delay": SCALE_DOWN_DELAY_DEFAULT,
    }
    if "com.openfaas.scale.zero-duration" in labels:
        annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] = labels[
            "com.openfaas.scale.zero-duration"
        ]
    return {
        "apiVersion": SERVING_API,
        "kind": "Service",
        "metadata": {"name": name, "namespace": settings.base_namespace, "labels": PART_OF},
        "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}},
    }


def broker(name: str, settings: KnativeSettings, dead_letter: bool) -> dict:
    spec: dict[str, Any] = {}
    if settings.broker_class == "Kafka":
        spec["config"] = dict(KAFKA_BROKER_CONFIG)
    if not dead_letter:
        spec["delivery"] = _delivery(settings)
    return {
        "apiVersion": BROKER_API, "kind": "Broker",
        "metadata": {"name": name, "namespace": settings.base_namespace, "labels": PART_OF,
                     "annotations": {BROKER_CLASS_ANNOTATION: settings.broker_class}},
        "spec": spec,
    }


def _delivery(settings: KnativeSettings) -> dict:
    """Retries with exponential backoff, then the dead-letter Broker (kept, for inspection and replay)."""
    return {
        "retry": settings.delivery_retries,
        "backoffPolicy": "exponential",
        "backoffDelay": settings.delivery_backoff_delay,
        "deadLetterSink": {"ref": {"apiVersion": BROKER_API, "kind": "Broker", "name": DEAD_LETTER_BROKER}},
    }


def queue_arn(region: str, account_id: str, stage: str, topic: str) -> str:
    return f"arn:aws:sqs:{region}:{account_id}:finfaas-{stage}-{topic}"


def integration_source(topic: str, settings: KnativeSettings, arn: str) -> dict:
    """Reads the queue into the Broker; each event carries its queue's name in QUEUE_EXTENSION."""
    return {
        "apiVersion": "sources.knative.dev/v1alpha1", "kind": "IntegrationSource",
        "metadata": {"name": f"queue-{topic}", "namespace": settings.base_namespace, "labels": PART_OF},
        "spec": {
            "aws": {
                "sqs": {"arn": arn, "region": settings.aws_region, "deleteAfterRead": True,
                        "waitTimeSeconds": SQS_WAIT_SECONDS, "maxMessagesPerPoll": SQS_MESSAGES_PER_POLL_MAX},
                "auth": {"serviceAccountName": settings.sqs_service_account},
            },
            # The CloudEvent type and source an IntegrationSource emits differ between releases: the
            # Triggers filter on this extension, which we set.
            "ceOverrides": {"extensions": {QUEUE_EXTENSION: topic}},
            "sink": {"ref": {"apiVersion": BROKER_API, "kind": "Broker", "name": QUEUES_BROKER}},
        },
    }


def trigger(function: str, topic: str, settings: KnativeSettings) -> dict:
    return {
        "apiVersion": BROKER_API, "kind": "Trigger",
        "metadata": {"name": f"{function}-{topic}", "namespace": settings.base_namespace, "labels": PART_OF},
        "spec": {
            "broker": QUEUES_BROKER,
            "filter": {"attributes": {QUEUE_EXTENSION: topic}},
            "subscriber": {"ref": {"apiVersion": SERVING_API, "kind": "Service", "name": function}},
            "delivery": _delivery(settings),
        },
    }


def ping_source(name: str, schedule: str, settings: KnativeSettings) -> dict:
    """Ticks a scheduled function's Service on its cron schedule: an unsigned CloudEvent with no data,
    which the function's route runs at most once per period (finfaas.platform.schedule)."""
    return {
        "apiVersion": SOURCES_API, "kind": "PingSource",
        "metadata": {"name": f"{name}-schedule", "namespace": settings.base_namespace, "labels": PART_OF},
        "spec": {
            "schedule": schedule,
            "timezone": "Etc/UTC",  # periods are whole minutes of UTC on the function's side too
            "sink": {"ref": {"apiVersion": SERVING_API, "kind": "Service", "name": name}},
        },
    }


def _dump(document: dict) -> str:
    return HEADER + yaml.safe_dump(document, sort_keys=False)




def base_manifests(stack: dict, settings: KnativeSettings) -> dict[str, str]:
    """File name -> YAML text of infra/knative/base/."""
    files: dict[str, str] = {}
    subscriptions = [(name, topic) for name, fn in sorted(stack["functions"].items()) for topic in topics(fn)]
    all_topics = sorted({topic for _, topic in subscriptions})
    files[f"{TARGET_CONFIG}.yaml"] = _dump(target_config(stack, settings))
    for name, fn in sorted(stack["functions"].items()):
        files[f"{name}.yaml"] = _dump(knative_service(name, fn, settings))
        schedule = schedule_of(fn.get("annotations") or {})
        if schedule is not None:
            files[f"{name}-schedule.yaml"] = _dump(ping_source(name, schedule, settings))
    if subscriptions:
        files[f"{QUEUES_BROKER}.yaml"] = _dump(broker(QUEUES_BROKER, settings, dead_letter=False))
        files[f"{DEAD_LETTER_BROKER}.yaml"] = _dump(broker(DEAD_LETTER_BROKER, settings, dead_letter=True))
    for topic in all_topics:
        arn = queue_arn(settings.aws_region, BASE_ACCOUNT_ID, _base_stage(stack), topic)
        files[f"queue-{topic}.yaml"] = _dump(integration_source(topic, settings, arn))
    for name, topic in subscriptions:
        files[f"{name}-{topic}-trigger.yaml"] = _dump(trigger(name, topic, settings))
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": sorted(files)}
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def overlay_manifests(stack: dict, settings: KnativeSettings, overlay: KnativeOverlay) -> dict[str, str]:
    """File name -> YAML text of one overlay: namespace, images, stage, addresses, queue ARNs."""
    functions = stack["functions"]
    config_patch = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": TARGET_CONFIG, "namespace": settings.base_namespace},  # as in the base
        "data": target_config_data(stack, settings.aws_region, overlay.stage, overlay.namespace),
    }
    patches: list[dict] = [{"path": f"{TARGET_CONFIG}.yaml"}]
    all_topics = sorted({topic for fn in functions.values() for topic in topics(fn)})
    for topic in all_topics:
        arn = queue_arn(settings.aws_region, overlay.aws_account_id, overlay.stage, topic)
        patches.append(_json_patch("sources.knative.dev", "v1alpha1", "IntegrationSource", f"queue-{topic}",
                                   "/spec/aws/sqs/arn", arn))
    images = [
        {"name": _image_name(fn["image"]), "newName": f"{overlay.image_registry}/{name}",
         "newTag": overlay.image_tag}
        for name, fn in sorted(functions.items())
    ]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": overlay.namespace,
        "resources": [f"../../{BASE}"],
        "images": images,
        "patches": patches,
    }
    return {
        "kustomization.yaml": HEADER + yaml.safe_dump(kustomization, sort_keys=False),
        f"{TARGET_CONFIG}.yaml": _dump(config_patch),
    }


def _json_patch(group: str, version: str, kind: str, name: str, path: str, value: str) -> dict:
    return {"target": {"group": group, "version": version, "kind": kind, "name": name},
            "patch": json.dumps([{"op": "replace", "path": path, "value": value}])}  # one readable line


def _image_name(image: str) -> str:
    """The image without its tag (kustomize's `images[].name`)."""
    last = image.rsplit("/", 1)[-1]
    return image[: len(image) - len(last)] + last.split(":", 1)[0]


def knative_manifests(stack: dict, settings: KnativeSettings) -> dict[str, str]:
    """Path under infra/knative/ -> YAML text, base and every overlay."""
    files = {f"{BASE}/{name}": text for name, text in base_manifests(stack, settings).items()}
    for overlay_name, overlay in sorted(settings.overlays.items()):
        for name, text in overlay_manifests(stack, settings, overlay).items():
            files[f"{OVERLAYS}/{overlay_name}/{name}"] = text
    return files


def write_knative(stack: dict, settings: KnativeSettings, folder: Path = KNATIVE_DIR) -> list[Path]:
    """Replace the generated tree: files no longer generated are removed, so none goes stale."""
    files = knative_manifests(stack, settings)
    for stale in sorted(folder.rglob("*.yaml")) if folder.exists() else []:
        if str(stale.relative_to(folder)) not in files:
            stale.unlink()
    written = []
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
