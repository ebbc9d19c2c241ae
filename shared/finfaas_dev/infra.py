"""`finfaas infra deploy`: infra/template.yaml into the embedded emulators, LocalStack or AWS.

Embedded: the AWS::DynamoDB::Table resources go to DynamoDB Local as CreateTable calls (moto's
tables would be the wrong emulator), everything else is a CloudFormation stack in moto. The
other targets get the whole template as one stack. Every path is idempotent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from botocore.parsers import ResponseParserError

from finfaas_dev import awsclients
from finfaas_dev.emulators import EmulatorError, require_endpoint
from finfaas_dev.tools import PROJECT_ROOT

TEMPLATE_PATH = PROJECT_ROOT / "infra" / "template.yaml"
TABLE_TYPE = "AWS::DynamoDB::Table"
STACK_NAME_FORMAT = "finfaas-{stage}"
STAGE_DEFAULT = "local"
STAGE_PATTERN = re.compile(r"[A-Za-z0-9-]{1,32}")  # as FINFAAS_STAGE and the template's AllowedPattern
STACK_POLL_INTERVAL_S = 5
STACK_WAIT_S_MAX = 1800
TABLE_ACTIVE_WAIT_S_MAX = 120
TABLE_POLL_INTERVAL_S = 0.2
NO_UPDATES_MESSAGE = "No updates are to be performed"
FAILED_STACK_STATES = frozenset(
    {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED"}
)
CFN_TAGS = ("Ref", "Condition", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Join", "Select",
            "Split", "FindInMap", "Base64", "Cidr", "GetAZs", "ImportValue")


class InfraError(RuntimeError):
    """The template could not be deployed; the message is one line for the user."""


# ---------------------------------------------------------------- template


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short forms (!Sub ...) into their long forms."""


def _construct_intrinsic(tag: str):
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in CFN_TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _construct_intrinsic(_tag))


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data, intrinsic functions in their long (JSON) form."""
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def table_ids(template: dict[str, Any]) -> list[str]:
    return [lid for lid, res in template["Resources"].items() if res["Type"] == TABLE_TYPE]


def _references(value: Any) -> set[str]:
    """Logical ids that value points at through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else item.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = item if isinstance(item, str) else item[0]
                found |= {name.split(".", 1)[0] for name in _sub_names(text)}
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _without_tables(template: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the template minus tables and table outputs, the table outputs)."""
    tables = set(table_ids(template))
    rest = dict(template)
    rest["Resources"] = {lid: r for lid, r in template["Resources"].items() if lid not in tables}
    outputs = template.get("Outputs", {})
    rest["Outputs"] = {k: o for k, o in outputs.items() if not _references(o["Value"]) & tables}
    return rest, {k: o for k, o in outputs.items() if k not in rest["Outputs"]}


# ---------------------------------------------------------------- intrinsic functions


def _sub_names(text: str) -> list[str]:
    names, position = [], 0
    while (start := text.find("${", position)) != -1:
        end = text.find("}", start)
        if end == -1:
            break
        if not text.startswith("${!", start):
            names.append(text[start + 2:end])
        position = end + 1
    return names


class Resolver:
    """Evaluates the intrinsic functions our template uses, for the resources deployed by hand."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str], pseudo: dict[str, str]):
        self._template = template
        self.refs: dict[str, Any] = {**pseudo, **parameters}
        self.attributes: dict[tuple[str, str], Any] = {}
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self._template["Conditions"][name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._function(key, argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _function(self, key: str, argument: Any) -> Any:
        if key == "Ref":
            return _NO_VALUE if argument == "AWS::NoValue" else self._lookup(argument)
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::GetAtt":
            logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._attribute(logical, attribute)
        if key == "Fn::Sub":
            return self._sub(argument)
        if key == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            left, right = (self.resolve(v) for v in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(argument[0])
        if key == "Fn::And":
            return all(self.resolve(v) for v in argument)
        if key == "Fn::Or":
            return any(self.resolve(v) for v in argument)
        if key == "Fn::Join":
            separator, items = argument
            return separator.join(str(v) for v in self.resolve(items))
        raise InfraError(f"{key} is not supported for tables deployed to DynamoDB Local")

    def _lookup(self, name: str) -> Any:
        if name not in self.refs:
            raise InfraError(f"Ref {name} cannot be resolved for the embedded deploy")
        return self.refs[name]

    def _attribute(self, logical: str, attribute: str) -> Any:
        if (logical, attribute) not in self.attributes:
            raise InfraError(
                f"GetAtt {logical}.{attribute} cannot be resolved for the embedded deploy "
                "(give it an output in infra/template.yaml)"
            )
        return self.attributes[(logical, attribute)]

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(v) for name, v in variables.items()}
        for name in _sub_names(text):
            if name not in values:
                logical, _, attribute = name.partition(".")
                values[name] = self._attribute(logical, attribute) if attribute else self._lookup(name)
            text = text.replace("${" + name + "}", str(values[name]))
        return text.replace("${!", "${")


_NO_VALUE = object()


# ---------------------------------------------------------------- CloudFormation stacks


def _stack_status(cfn, stack_name: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def _deploy_stack(cfn, stack_name: str, body: str, stage: str) -> dict[str, Any]:
    """Create or update the stack (skipping an unchanged one); returns its description."""
    parameters = [{"ParameterKey": "Stage", "ParameterValue": stage}]
    status = _stack_status(cfn, stack_name)
    if status in FAILED_STACK_STATES:
        raise InfraError(f"stack {stack_name} is in state {status}: delete it, then deploy again")
    if status is None:
        cfn.create_stack(StackName=stack_name, TemplateBody=body, Parameters=parameters,
                         Tags=[{"Key": "finfaas:stage", "Value": stage}])
        _wait_stack(cfn, stack_name, "stack_create_complete")
    elif not _same_template(cfn.get_template(StackName=stack_name)["TemplateBody"], body):
        try:
            cfn.update_stack(StackName=stack_name, TemplateBody=body, Parameters=parameters)
        except ClientError as error:
            if NO_UPDATES_MESSAGE not in str(error):
                raise
        else:
            _wait_stack(cfn, stack_name, "stack_update_complete")
    return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]


def _same_template(deployed: Any, body: str) -> bool:
    # botocore hands back a JSON body already parsed; a YAML one stays text.
    if isinstance(deployed, str):
        return deployed == body
    try:
        return json.loads(json.dumps(deployed)) == json.loads(body)
    except ValueError:
        return False


def _wait_stack(cfn, stack_name: str, waiter_name: str) -> None:
    try:
        cfn.get_waiter(waiter_name).wait(
            StackName=stack_name,
            WaiterConfig={"Delay": STACK_POLL_INTERVAL_S,
                          "MaxAttempts": STACK_WAIT_S_MAX // STACK_POLL_INTERVAL_S},
        )
    except WaiterError as error:
        status = _stack_status(cfn, stack_name)
        raise InfraError(f"stack {stack_name} ended in state {status}: {_first_line(error)}") from error


def _outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


# ---------------------------------------------------------------- DynamoDB tables


def create_table_request(properties: dict[str, Any]) -> dict[str, Any]:
    """CreateTable arguments from resolved AWS::DynamoDB::Table properties."""
    request: dict[str, Any] = {
        "TableName": properties["TableName"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "GlobalSecondaryIndexes" in properties:
        request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if "LocalSecondaryIndexes" in properties:
        request["LocalSecondaryIndexes"] = properties["LocalSecondaryIndexes"]
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    if "SSESpecification" in properties:
        sse = properties["SSESpecification"]
        request["SSESpecification"] = {"Enabled": bool(sse["SSEEnabled"]),
                                       **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse}}
    if "StreamSpecification" in properties:
        request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    if "DeletionProtectionEnabled" in properties:
        request["DeletionProtectionEnabled"] = bool(properties["DeletionProtectionEnabled"])
    if "Tags" in properties:
        request["Tags"] = properties["Tags"]
    return request


def ensure_table(dynamodb, properties: dict[str, Any]) -> dict[str, Any]:
    """Create the table unless it exists with the same keys and indexes; returns its description."""
    request = create_table_request(properties)
    name = request["TableName"]
    description = _describe_table(dynamodb, name)
    if description is None:
        try:
            description = dynamodb.create_table(**request)["TableDescription"]
        except dynamodb.exceptions.ResourceInUseException:
            description = _describe_table(dynamodb, name)  # a concurrent deploy won the race
    _verify_table_shape(description, request)
    description = _wait_table_active(dynamodb, name, description)
    _ensure_ttl(dynamodb, name, properties.get("TimeToLiveSpecification"))
    _ensure_point_in_time_recovery(dynamodb, name, properties.get("PointInTimeRecoverySpecification"))
    return description


def _describe_table(dynamodb, name: str) -> dict[str, Any] | None:
    try:
        return dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return None


def _shape(table: dict[str, Any]) -> tuple:
    def keys(schema: list[dict[str, str]]) -> tuple:
        return tuple((k["AttributeName"], k["KeyType"]) for k in schema)

    def projection(index: dict[str, Any]) -> tuple:
        projected = index["Projection"]
        return projected["ProjectionType"], tuple(sorted(projected.get("NonKeyAttributes", ())))

    indexes = sorted((i["IndexName"], keys(i["KeySchema"]), projection(i))
                     for i in table.get("GlobalSecondaryIndexes", []))
    return keys(table["KeySchema"]), tuple(indexes)


def _verify_table_shape(existing: dict[str, Any], request: dict[str, Any]) -> None:
    if _shape(existing) != _shape(request):
        raise InfraError(
            f"table {request['TableName']} exists with other keys or indexes than the template: "
            "delete it (or use another stage) and deploy again"
        )


def _wait_table_active(dynamodb, name: str, description: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + TABLE_ACTIVE_WAIT_S_MAX
    while description["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise InfraError(f"table {name} not ACTIVE after {TABLE_ACTIVE_WAIT_S_MAX} s")
        time.sleep(TABLE_POLL_INTERVAL_S)
        description = dynamodb.describe_table(TableName=name)["Table"]
    return description


def _ensure_ttl(dynamodb, name: str, ttl: dict[str, Any] | None) -> None:
    if not ttl or not ttl.get("Enabled"):
        return
    current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if current.get("AttributeName") != ttl["AttributeName"]:
            raise InfraError(f"table {name} has TTL on {current.get('AttributeName')}, "
                             f"the template says {ttl['AttributeName']}")
        return
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
    )


def _ensure_point_in_time_recovery(dynamodb, name: str, spec: dict[str, Any] | None) -> None:
    if not spec or not spec.get("PointInTimeRecoveryEnabled"):
        return
    try:
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    except ClientError as error:
        # DynamoDB Local has no backups API; there is nothing to recover from in memory anyway.
        if error.response["Error"]["Code"] != "UnknownOperationException":
            raise


# ---------------------------------------------------------------- targets


def deploy(stage: str = STAGE_DEFAULT, target: str = "embedded",
           template_path: Path = TEMPLATE_PATH) -> dict[str, str]:
    """Deploy the template under stage to target; returns the stack outputs by output key."""
    if not STAGE_PATTERN.fullmatch(stage):
        raise InfraError(f"stage must be 1-32 letters, digits or '-', got {stage!r}")
    template = load_template(template_path)
    try:
        if target == "embedded":
            return _deploy_embedded(template, stage)
        if target in ("localstack", "aws"):
            cfn = awsclients.client("cloudformation", target)
            stack_name = STACK_NAME_FORMAT.format(stage=stage)
            return _outputs(_deploy_stack(cfn, stack_name, template_path.read_text(), stage))
    except (ClientError, BotoCoreError, ResponseParserError) as error:
        raise InfraError(f"deploy to {target} failed: {_first_line(error)}") from error
    raise InfraError(f"unknown target {target!r}; expected one of {', '.join(awsclients.TARGETS)}")


def _deploy_embedded(template: dict[str, Any], stage: str) -> dict[str, str]:
    require_endpoint(awsclients.embedded_endpoint("dynamodb"), "DynamoDB Local")
    require_endpoint(awsclients.embedded_endpoint("cloudformation"), "moto")
    rest, table_outputs = _without_tables(template)
    cfn = awsclients.client("cloudformation", "embedded")
    stack = _deploy_stack(cfn, STACK_NAME_FORMAT.format(stage=stage), json.dumps(rest), stage)
    resolver = _embedded_resolver(template, rest, stack, cfn, stage)
    dynamodb = awsclients.client("dynamodb", "embedded")
    for logical in table_ids(template):
        properties = resolver.resolve(template["Resources"][logical]["Properties"])
        table = ensure_table(dynamodb, properties)
        resolver.refs[logical] = table["TableName"]
        resolver.attributes[(logical, "Arn")] = table["TableArn"]
        if "LatestStreamArn" in table:
            resolver.attributes[(logical, "StreamArn")] = table["LatestStreamArn"]
    resolved = {key: str(resolver.resolve(o["Value"])) for key, o in table_outputs.items()}
    return {**_outputs(stack), **_local_queue_urls(template, rest, resolver), **resolved}


def _local_queue_urls(template: dict[str, Any], rest: dict[str, Any], resolver: Resolver) -> dict[str, str]:
    """Queue URL outputs as moto serves them (its Ref gives the public sqs.<region> form)."""
    sqs = awsclients.client("sqs", "embedded")
    urls = {}
    for key, output in rest["Outputs"].items():
        logical = output["Value"].get("Ref") if isinstance(output["Value"], dict) else None
        resource = template["Resources"].get(logical or "", {})
        if resource.get("Type") == "AWS::SQS::Queue":
            name = resolver.resolve(resource["Properties"]["QueueName"])
            urls[key] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return urls


def _embedded_resolver(template, rest, stack, cfn, stage: str) -> Resolver:
    # arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>
    _, partition, _, region, account, _ = stack["StackId"].split(":", 5)
    resolver = Resolver(template, {"Stage": stage}, {
        "AWS::Partition": partition, "AWS::Region": region, "AWS::AccountId": account,
        "AWS::StackName": stack["StackName"], "AWS::StackId": stack["StackId"],
        "AWS::URLSuffix": "amazonaws.com",
    })
    resources = cfn.describe_stack_resources(StackName=stack["StackName"])["StackResources"]
    resolver.refs.update({r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources})
    # A GetAtt on a moto resource is known through the output that exposes it.
    outputs = _outputs(stack)
    for key, output in rest["Outputs"].items():
        value = output["Value"]
        if isinstance(value, dict) and list(value) == ["Fn::GetAtt"] and key in outputs:
            logical, attribute = value["Fn::GetAtt"]
            resolver.attributes[(logical, attribute)] = outputs[key]
    return resolver


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Deploy infra/template.yaml (tables, queues, KMS key) and print its outputs."
    parser.add_argument("--target", choices=awsclients.TARGETS, default="embedded")
    parser.add_argument("--stage", default=None, help="default: $FINFAAS_STAGE or 'local'")


def run(args: argparse.Namespace) -> int:
    stage = args.stage or os.environ.get("FINFAAS_STAGE") or STAGE_DEFAULT
    started = time.monotonic()
    try:
        outputs = deploy(stage, args.target)
    except (InfraError, EmulatorError) as error:
        print(f"finfaas infra deploy: {error}", file=sys.stderr)
        return 1
    width = max(len(key) for key in outputs)
    for key in sorted(outputs):
        print(f"{key:<{width}}  {outputs[key]}")
    print(f"deployed stage {stage} to {args.target} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0
