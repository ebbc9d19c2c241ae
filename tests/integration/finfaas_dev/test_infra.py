"""infra/template.yaml deployed into the embedded emulators: every resource, as the template says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from finfaas_dev.infra import TEMPLATE_PATH, InfraError, deploy, load_template, table_ids
from finfaas_dev.net import free_port

TEMPLATE = load_template()
# Each queue's logical id in the template and its name after the stage prefix.
QUEUES = {"Orchestrator": "orchestrator", "Events": "events", "Webhooks": "webhooks", "Rail": "rail",
          "Reviews": "reviews", "LoanReviews": "loan-reviews"}
QUEUE_LOGICALS = tuple(QUEUES)
DLQ_RETENTION_S = 14 * 24 * 3600
QUEUE_VISIBILITY_TIMEOUT_S = 30
MAX_RECEIVE_COUNT = 5
REDEPLOY_S_MAX = 10
CLI_TIMEOUT_S = 60


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finfaas_dev.cli", *args], env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


@pytest.mark.parametrize("logical", table_ids(TEMPLATE))
def test_each_table_has_the_template_keys_indexes_and_ttl(embedded_aws, logical):
    properties = TEMPLATE["Resources"][logical]["Properties"]
    name = embedded_aws.outputs[f"{logical}Name"]
    assert name == f"finfaas-{embedded_aws.stage}-{logical.removesuffix('Table').lower()}"
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName=name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == properties["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TableArn"] == embedded_aws.outputs[f"{logical}Arn"]
    def indexes(described: dict) -> dict:
        found = described.get("GlobalSecondaryIndexes", [])
        return {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in found}

    assert indexes(table) == indexes(properties)  # keys and projection as the template says
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if "TimeToLiveSpecification" in properties:
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    else:
        assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_the_owner_index_finds_accounts_by_owner(embedded_aws):
    # GIVEN two accounts of one owner and one of another
    dynamodb = boto3.client("dynamodb")
    table = embedded_aws.outputs["AccountsTableName"]
    owner = f"cus-{uuid.uuid4().hex}"
    for account, holder, opened in (("a1", owner, "2026-01-02"), ("a2", owner, "2026-01-01"),
                                    ("a3", "someone-else", "2026-01-01")):
        dynamodb.put_item(TableName=table, Item={
            "account_id": {"S": f"{owner}-{account}"}, "owner_id": {"S": holder}, "opened_at": {"S": opened}})
    # WHEN the by-owner index is queried
    found = dynamodb.query(TableName=table, IndexName="by-owner",
                           KeyConditionExpression="owner_id = :owner",
                           ExpressionAttributeValues={":owner": {"S": owner}})["Items"]
    # THEN only that owner's accounts come back, oldest first
    try:
        assert [item["account_id"]["S"] for item in found] == [f"{owner}-a2", f"{owner}-a1"]
    finally:
        # These bare items are no ledger accounts: leave the session's ledger as other tests expect it.
        for account in ("a1", "a2", "a3"):
            dynamodb.delete_item(TableName=table, Key={"account_id": {"S": f"{owner}-{account}"}})


@pytest.mark.parametrize("logical", QUEUE_LOGICALS)
def test_each_queue_redrives_to_its_own_dlq(embedded_aws, logical):
    sqs = boto3.client("sqs")
    outputs = embedded_aws.outputs
    queue, dlq = (sqs.get_queue_attributes(QueueUrl=outputs[key], AttributeNames=["All"])["Attributes"]
                  for key in (f"{logical}QueueUrl", f"{logical}DeadLetterQueueUrl"))
    assert outputs[f"{logical}QueueName"] == f"finfaas-{embedded_aws.stage}-{QUEUES[logical]}"
    assert outputs[f"{logical}DeadLetterQueueName"] == f"finfaas-{embedded_aws.stage}-{QUEUES[logical]}-dlq"
    assert queue["QueueArn"] == outputs[f"{logical}QueueArn"]
    assert int(queue["VisibilityTimeout"]) == QUEUE_VISIBILITY_TIMEOUT_S
    assert json.loads(queue["RedrivePolicy"]) == {
        "deadLetterTargetArn": outputs[f"{logical}DeadLetterQueueArn"], "maxReceiveCount": MAX_RECEIVE_COUNT}
    assert int(dlq["MessageRetentionPeriod"]) == DLQ_RETENTION_S
    assert queue["KmsMasterKeyId"] == dlq["KmsMasterKeyId"] == outputs["PiiKeyId"]


def test_queue_urls_are_served_by_the_emulator(embedded_aws):
    moto = embedded_aws.env()["AWS_ENDPOINT_URL"]
    urls = [value for key, value in embedded_aws.outputs.items() if key.endswith("Url")]
    assert len(urls) == 2 * len(QUEUE_LOGICALS)
    assert all(url.startswith(moto + "/") for url in urls)


def test_pii_key_is_a_rotating_symmetric_key_reachable_by_alias(embedded_aws):
    kms = boto3.client("kms")
    alias = f"alias/finfaas-{embedded_aws.stage}-pii"
    assert embedded_aws.outputs["PiiKeyAlias"] == alias
    key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    assert key["Arn"] == embedded_aws.outputs["PiiKeyArn"]
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT" and key["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    # Envelope encryption as PII code does it: a data key under the alias, unwrapped later by KMS.
    data_key = kms.generate_data_key(KeyId=alias, KeySpec="AES_256")
    unwrapped = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])
    assert unwrapped["Plaintext"] == data_key["Plaintext"]
    assert unwrapped["KeyId"] == key["Arn"]
    assert json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])["Statement"]


def test_outputs_cover_every_template_output(embedded_aws):
    assert set(embedded_aws.outputs) == set(TEMPLATE["Outputs"])
    assert embedded_aws.outputs["Stage"] == embedded_aws.stage


def test_deploying_again_changes_nothing_and_keeps_data(embedded_aws):
    # GIVEN a deployed stage holding an item
    dynamodb = boto3.client("dynamodb")
    # (a table outside the ledger, so no bare item sits among the session's transfers)
    table = embedded_aws.outputs["RateLimitsTableName"]
    bucket = f"redeploy-{uuid.uuid4().hex}"
    dynamodb.put_item(TableName=table, Item={"bucket": {"S": bucket}})
    # WHEN the same template is deployed twice more
    started = time.monotonic()
    first = deploy(embedded_aws.stage, "embedded")
    second = deploy(embedded_aws.stage, "embedded")
    elapsed_s = time.monotonic() - started
    # THEN the outputs are the same, nothing was recreated, and it was quick
    assert first == second == embedded_aws.outputs
    assert dynamodb.get_item(TableName=table, Key={"bucket": {"S": bucket}})["Item"]
    assert elapsed_s < REDEPLOY_S_MAX


def test_a_changed_template_updates_the_stack(embedded_aws, tmp_path: Path):
    # GIVEN a template with one more queue, deployed under a fresh stage first without it
    stage = f"{embedded_aws.stage}-up"
    deploy(stage, "embedded")
    new_queue = ("  AuditExportQueue:\n    Type: AWS::SQS::Queue\n"
                 "    Properties:\n      QueueName: !Sub finfaas-${Stage}-audit-export\n")
    new_output = "  AuditExportQueueUrl:\n    Value: !Ref AuditExportQueue\n"
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE_PATH.read_text().replace("\nResources:\n", "\nResources:\n" + new_queue, 1)
                    + new_output)
    # WHEN it is deployed
    outputs = deploy(stage, "embedded", template_path=path)
    # THEN the new queue exists and the old resources are still there
    assert outputs["AuditExportQueueUrl"].endswith(f"/finfaas-{stage}-audit-export")
    assert outputs["AccountsTableName"] == f"finfaas-{stage}-accounts"
    boto3.client("sqs").get_queue_attributes(QueueUrl=outputs["OrchestratorQueueUrl"])


def test_a_table_with_other_keys_is_refused_not_replaced(embedded_aws):
    # GIVEN a stage whose transfers table exists with a different key
    stage = f"{embedded_aws.stage}-x"
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=f"finfaas-{stage}-transfers", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    # WHEN the template is deployed there
    with pytest.raises(InfraError) as raised:
        deploy(stage, "embedded")
    # THEN it says which table, in one line, and the table is untouched
    assert f"finfaas-{stage}-transfers" in str(raised.value) and "\n" not in str(raised.value)
    schema = dynamodb.describe_table(TableName=f"finfaas-{stage}-transfers")["Table"]["KeySchema"]
    assert schema == [{"AttributeName": "id", "KeyType": "HASH"}]


def test_a_bad_stage_name_is_refused():
    with pytest.raises(InfraError):
        deploy("no spaces/allowed", "embedded")


def test_cli_deploy_prints_the_outputs(embedded_aws):
    result = _cli("infra", "deploy", "--stage", embedded_aws.stage, env={**os.environ, **embedded_aws.env()})
    assert result.returncode == 0, result.stderr
    printed = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert printed == embedded_aws.outputs


def test_cli_deploy_without_emulators_is_a_one_line_error(tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": dead, "AWS_ENDPOINT_URL": dead}
    result = _cli("infra", "deploy", "--stage", "nowhere", env=env)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert dead in result.stderr and "Traceback" not in result.stderr


def test_localstack_target_deploys_the_whole_template_as_one_stack_to_any_aws_endpoint(embedded_aws):
    # GIVEN moto's CloudFormation standing in for LocalStack (whose free image needs a token): the
    # localstack target's own code path, the template as it is, every resource in one stack
    moto = embedded_aws.env()["AWS_ENDPOINT_URL"]
    stage = f"ls{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_DYNAMODB": "", "FINFAAS_STAGE": stage}

    # WHEN an operator deploys it, twice (the second changes nothing)
    first = _cli("infra", "deploy", "--target", "localstack", env=env)
    second = _cli("infra", "deploy", "--target", "localstack", env=env)

    # THEN every output is printed, and names resources that endpoint now serves
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0 and second.stdout == first.stdout, second.stderr
    printed = dict(line.split(None, 1) for line in first.stdout.splitlines())
    assert set(printed) == set(TEMPLATE["Outputs"])
    session = boto3.session.Session(region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=moto)  # the stack's tables are moto's, not Local's
    for logical in table_ids(TEMPLATE):
        assert printed[f"{logical}Name"] == f"finfaas-{stage}-{logical.removesuffix('Table').lower()}"
        table = dynamodb.describe_table(TableName=printed[f"{logical}Name"])["Table"]
        assert table["TableStatus"] == "ACTIVE"
    sqs = session.client("sqs", endpoint_url=moto)
    for logical in QUEUE_LOGICALS:
        attributes = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(
            QueueName=printed[f"{logical}QueueName"])["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]
        assert attributes["QueueArn"] == printed[f"{logical}QueueArn"]
    key = session.client("kms", endpoint_url=moto).describe_key(KeyId=f"alias/finfaas-{stage}-pii")
    assert key["KeyMetadata"]["Arn"] == printed["PiiKeyArn"]
    iam = session.client("iam", endpoint_url=moto)
    policy = iam.get_policy(PolicyArn=printed["RailFunctionPolicyArn"])["Policy"]
    assert policy["PolicyName"] == f"finfaas-{stage}-rail"
