"""infra/template.yaml: valid CloudFormation (cfn-lint, offline) that says what the suite relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cfnlint.api import lint_all
from finfaas.store.executions_store import (
    BY_REFERENCE_INDEX,
    BY_REFERENCE_INDEX_ATTRIBUTES,
    BY_STATUS_INDEX,
    BY_STATUS_INDEX_ATTRIBUTES,
)
from finfaas.store.models import OPEN_HOLDS_INDEX
from finfaas.store.payments_store import EXPIRY_INDEX, MERCHANTS_INDEX
from finfaas.store.transfers_store import BY_OPEN_STATUS_INDEX, BY_OWNER_INDEX, BY_OWNER_INDEX_ATTRIBUTES
from finfaas_dev.build import load_stack
from finfaas_dev.infra import (
    TEMPLATE_PATH,
    InfraError,
    Resolver,
    _verify_table_shape,
    _without_tables,
    create_table_request,
    load_template,
    table_ids,
)
from finfaas_dev.resource_use import function_resources

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]
INFORMATIONAL_RULE_PREFIX = "I"
DLQ_RETENTION_S = 14 * 24 * 3600

# logical table -> (key schema, GSIs {name: key schema}, TTL attribute)
EXPECTED_TABLES = {
    "accounts": ([("account_id", "S", "HASH")],
                 {"by-owner": [("owner_id", "S", "HASH"), ("opened_at", "S", "RANGE")]}, None),
    "transfers": ([("transfer_id", "S", "HASH")],
                  {OPEN_HOLDS_INDEX: [("held_account_id", "S", "HASH"), ("created_at", "S", "RANGE")]}, None),
    "entries": ([("account_id", "S", "HASH"), ("entry_key", "S", "RANGE")], {}, None),
    "outbox": ([("partition", "S", "HASH"), ("event_key", "S", "RANGE")], {}, None),
    "idempotency": ([("idempotency_key", "S", "HASH")], {}, "expires_at"),
    "audit": ([("chain", "S", "HASH"), ("seq", "N", "RANGE")], {}, None),
    "ratelimits": ([("bucket", "S", "HASH")], {}, "expires_at"),
    "customers": ([("customer_id", "S", "HASH")], {"by-username": [("username", "S", "HASH")]}, None),
    "auth": ([("pk", "S", "HASH"), ("sk", "S", "RANGE")], {}, "expires_at"),
    "executions": ([("execution_id", "S", "HASH")],
                   {"by-status-shards": [("status_shard", "S", "HASH"), ("next_run_at", "S", "RANGE")],
                    BY_REFERENCE_INDEX: [("reference", "S", "HASH"), ("started_at_ms", "N", "RANGE")]}, None),
    "history": ([("execution_id", "S", "HASH"), ("seq", "N", "RANGE")], {}, None),
    "transferorders": ([("pk", "S", "HASH"), ("sk", "S", "RANGE")],
                       {BY_OWNER_INDEX: [("owner_id", "S", "HASH"), ("created_at", "S", "RANGE")],
                        BY_OPEN_STATUS_INDEX: [("open_status", "S", "HASH"), ("created_at", "S", "RANGE")]},
                       None),
    "risk": ([("pk", "S", "HASH"), ("sk", "S", "RANGE")], {}, None),
    "rail": ([("payment_id", "S", "HASH")], {}, None),
    "payments": ([("pk", "S", "HASH"), ("sk", "S", "RANGE")],
                 {"by-merchant": [("merchant_id", "S", "HASH"), ("created_key", "S", "RANGE")],
                  "by-owner": [("owner_id", "S", "HASH"), ("created_key", "S", "RANGE")],
                  EXPIRY_INDEX: [("expiry_shard", "S", "HASH"), ("expiry_due_key", "S", "RANGE")],
                  MERCHANTS_INDEX: [("listed", "S", "HASH"), ("merchant_id", "S", "RANGE")]}, None),
    "businessdates": ([("market", "S", "HASH")], {}, None),
    "wallet": ([("pk", "S", "HASH"), ("sk", "S", "RANGE")],
               {"by-owner": [("owner_key", "S", "HASH"), ("created_key", "S", "RANGE")]}, None),
    "loans": ([("pk", "S", "HASH"), ("sk", "S", "RANGE")], {}, None),
    "wealth": ([("pk", "S", "HASH"), ("sk", "S", "RANGE")], {}, None),
}
QUEUES = ("orchestrator", "events", "webhooks", "rail", "reviews", "loan-reviews")
# Indexes that project less than the whole item, as their stores declare them.
NARROW_PROJECTIONS = {
    BY_STATUS_INDEX: {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(BY_STATUS_INDEX_ATTRIBUTES)},
    BY_REFERENCE_INDEX: {"ProjectionType": "INCLUDE",
                         "NonKeyAttributes": list(BY_REFERENCE_INDEX_ATTRIBUTES)},
    BY_OWNER_INDEX: {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(BY_OWNER_INDEX_ATTRIBUTES)},
    BY_OPEN_STATUS_INDEX: {"ProjectionType": "KEYS_ONLY"},
    OPEN_HOLDS_INDEX: {"ProjectionType": "KEYS_ONLY"},
    EXPIRY_INDEX: {"ProjectionType": "KEYS_ONLY"},
    MERCHANTS_INDEX: {"ProjectionType": "KEYS_ONLY"},
}


def _tables_by_logical_name() -> dict[str, dict]:
    found = {}
    for logical in table_ids(TEMPLATE):
        name = RESOURCES[logical]["Properties"]["TableName"]["Fn::Sub"]
        assert name.startswith("finfaas-${Stage}-"), name
        found[name.removeprefix("finfaas-${Stage}-")] = RESOURCES[logical]["Properties"]
    return found


def _queues_by_name() -> dict[str, tuple[str, dict]]:
    return {r["Properties"]["QueueName"]["Fn::Sub"].removeprefix("finfaas-${Stage}-"): (lid, r["Properties"])
            for lid, r in RESOURCES.items() if r["Type"] == "AWS::SQS::Queue"}


def test_cfn_lint_finds_no_error_or_warning():
    problems = [m for m in lint_all(TEMPLATE_PATH.read_text())
                if not m.rule.id.startswith(INFORMATIONAL_RULE_PREFIX)]
    assert problems == []


def test_stage_parameter_defaults_to_local():
    assert TEMPLATE["Parameters"]["Stage"]["Default"] == "local"


def test_every_named_resource_is_named_after_its_stage():
    name_properties = ("TableName", "QueueName", "AliasName")
    for logical, resource in RESOURCES.items():
        names = [resource["Properties"][p] for p in name_properties if p in resource["Properties"]]
        for name in names:
            assert "Fn::Sub" in name and "finfaas-${Stage}-" in name["Fn::Sub"], logical


@pytest.mark.parametrize("name", sorted(EXPECTED_TABLES))
def test_table_keys_indexes_and_ttl_are_as_the_code_expects(name):
    key_schema, indexes, ttl_attribute = EXPECTED_TABLES[name]
    table = _tables_by_logical_name()[name]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}

    def typed(schema: list[dict]) -> list[tuple[str, str, str]]:
        return [(k["AttributeName"], types[k["AttributeName"]], k["KeyType"]) for k in schema]

    assert typed(table["KeySchema"]) == key_schema
    actual_indexes = {index["IndexName"]: typed(index["KeySchema"])
                      for index in table.get("GlobalSecondaryIndexes", [])}
    assert actual_indexes == indexes
    for index in table.get("GlobalSecondaryIndexes", []):
        assert index["Projection"] == NARROW_PROJECTIONS.get(index["IndexName"], {"ProjectionType": "ALL"})
    ttl = table.get("TimeToLiveSpecification")
    assert (ttl == {"AttributeName": ttl_attribute, "Enabled": True}) if ttl_attribute else ttl is None


def test_a_deployed_index_projecting_other_attributes_than_the_template_is_refused():
    request = {
        "TableName": "finfaas-x-executions",
        "KeySchema": [{"AttributeName": "execution_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": BY_STATUS_INDEX,
            "KeySchema": [{"AttributeName": "status_shard", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["state_machine"]},
        }],
    }
    wider = json.loads(json.dumps(request))
    wider["GlobalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"].append("input")

    _verify_table_shape(json.loads(json.dumps(request)), request)  # the same shape passes
    with pytest.raises(InfraError, match="other keys or indexes"):
        _verify_table_shape(wider, request)


def test_every_table_is_on_demand_recoverable_and_encrypted_with_the_pii_key():
    assert set(_tables_by_logical_name()) == set(EXPECTED_TABLES)
    for table in _tables_by_logical_name().values():
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["SSESpecification"] == {
            "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Fn::GetAtt": ["PiiKey", "Arn"]}}


def test_stateful_resources_survive_stack_deletion():
    for logical, resource in RESOURCES.items():
        if resource["Type"] in ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::KMS::Key"):
            assert resource.get("DeletionPolicy") == resource.get("UpdateReplacePolicy") == "Retain", logical


@pytest.mark.parametrize("name", QUEUES)
def test_each_queue_has_a_dlq_after_five_receives(name):
    queues = _queues_by_name()
    _, queue = queues[name]
    dlq_logical, dlq = queues[f"{name}-dlq"]
    assert queue["VisibilityTimeout"] == 30
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_logical, "Arn"]},
                                      "maxReceiveCount": 5}
    assert dlq["MessageRetentionPeriod"] == DLQ_RETENTION_S
    assert queue["KmsMasterKeyId"] == dlq["KmsMasterKeyId"] == {"Ref": "PiiKey"}


def test_only_the_named_queues_exist():
    assert set(_queues_by_name()) == {*QUEUES, *(f"{q}-dlq" for q in QUEUES)}


def test_pii_key_is_symmetric_rotating_and_aliased_per_stage():
    key = RESOURCES["PiiKey"]["Properties"]
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT" and key["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert key["EnableKeyRotation"] is True
    alias = RESOURCES["PiiKeyAlias"]["Properties"]
    assert alias == {"AliasName": {"Fn::Sub": "alias/finfaas-${Stage}-pii"}, "TargetKeyId": {"Ref": "PiiKey"}}


def test_every_resource_is_named_in_the_outputs():
    referenced = set()
    for output in TEMPLATE["Outputs"].values():
        value = output["Value"]
        referenced.add(value.get("Ref") or value.get("Fn::GetAtt", [None])[0])
    assert set(RESOURCES) <= referenced
    for logical in table_ids(TEMPLATE):
        assert TEMPLATE["Outputs"][f"{logical}Name"]["Value"] == {"Ref": logical}
        assert TEMPLATE["Outputs"][f"{logical}Arn"]["Value"] == {"Fn::GetAtt": [logical, "Arn"]}


# ---- the pieces of the embedded deploy that need no emulator


def _resolver(stage: str = "t1") -> Resolver:
    resolver = Resolver(TEMPLATE, {"Stage": stage}, {"AWS::Region": "us-east-1", "AWS::AccountId": "1"})
    resolver.attributes[("PiiKey", "Arn")] = "arn:aws:kms:us-east-1:1:key/k"
    return resolver


def test_table_properties_become_a_create_table_request():
    properties = _resolver("t1").resolve(RESOURCES["AccountsTable"]["Properties"])
    request = create_table_request(properties)
    assert request["TableName"] == "finfaas-t1-accounts"
    assert request["BillingMode"] == "PAY_PER_REQUEST"
    assert request["SSESpecification"] == {"Enabled": True, "SSEType": "KMS",
                                           "KMSMasterKeyId": "arn:aws:kms:us-east-1:1:key/k"}
    assert request["DeletionProtectionEnabled"] is False
    assert request["GlobalSecondaryIndexes"][0]["IndexName"] == "by-owner"
    assert "PointInTimeRecoverySpecification" not in request  # a separate API call


def test_production_stage_turns_deletion_protection_on():
    properties = _resolver("prod").resolve(RESOURCES["TransfersTable"]["Properties"])
    assert create_table_request(properties)["DeletionProtectionEnabled"] is True


def test_resolver_refuses_what_it_cannot_know():
    with pytest.raises(InfraError):
        _resolver().resolve({"Fn::GetAtt": ["OrchestratorQueue", "Arn"]})
    with pytest.raises(InfraError):
        _resolver().resolve({"Fn::Sub": "${NoSuchParameter}"})


def test_resolver_keeps_escaped_sub_literals():
    assert _resolver("t1").resolve({"Fn::Sub": "${!Literal}-${Stage}"}) == "${Literal}-t1"


def test_tables_and_their_outputs_are_split_from_the_moto_stack():
    rest, table_outputs = _without_tables(TEMPLATE)
    assert not set(table_ids(TEMPLATE)) & set(rest["Resources"])
    expected = {f"{logical}{suffix}" for logical in table_ids(TEMPLATE) for suffix in ("Name", "Arn")}
    assert set(table_outputs) == expected
    assert set(rest["Outputs"]) | set(table_outputs) == set(TEMPLATE["Outputs"])


def test_the_key_policy_lets_the_account_root_manage_the_key_and_the_key_has_no_own_tags():
    # JSON text (moto misreads an object policy and Key/Value tags); the stack's tag reaches the key.
    key = RESOURCES["PiiKey"]["Properties"]
    policy = json.loads(key["KeyPolicy"]["Fn::Sub"])
    assert policy["Statement"] == [{
        "Sid": "AccountRootManagesKey", "Effect": "Allow",
        "Principal": {"AWS": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},
        "Action": "kms:*", "Resource": "*"}]
    assert "Tags" not in key


# ---- each function's IAM policy: what its code reaches, nothing more

STACK_FUNCTIONS = sorted(load_stack(ROOT / "stack.yml")["functions"].items())
TABLE_ARN_PREFIX = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/finfaas-${Stage}-"
# Named by the demo state machine only; not deployed, so no function may send to it on AWS.
UNDEPLOYED_QUEUES = {"demo-approvals"}


def _policy_of(name: str) -> dict[str, dict]:
    """Statement Sid -> statement of the function's managed policy."""
    policy = RESOURCES[f"{name.capitalize()}FunctionPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert policy["Properties"]["ManagedPolicyName"] == {"Fn::Sub": f"finfaas-${{Stage}}-{name}"}
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize(("name", "function"), STACK_FUNCTIONS, ids=[n for n, _ in STACK_FUNCTIONS])
def test_each_function_policy_allows_only_the_tables_queues_and_key_its_code_reaches(name, function):
    use = function_resources(ROOT / function["handler"] / "handler.py", ROOT)
    statements = _policy_of(name)

    table_arns = [arn["Fn::Sub"] for arn in statements.get("Tables", {}).get("Resource", [])]
    tables = {arn.removeprefix(TABLE_ARN_PREFIX) for arn in table_arns if not arn.endswith("/index/*")}
    queue_ids = {queue["Fn::GetAtt"][0] for sid in ("Queues", "DeadLetterQueues")
                 for queue in statements.get(sid, {}).get("Resource", [])}
    queues = {name for name, (logical, _) in _queues_by_name().items() if logical in queue_ids}

    assert tables == set(use.tables)
    assert sorted(table_arns) == sorted([f"{TABLE_ARN_PREFIX}{t}" for t in tables]
                                        + [f"{TABLE_ARN_PREFIX}{t}/index/*" for t in tables])
    assert queues == set(use.queues) - UNDEPLOYED_QUEUES
    assert ("PiiEnvelopes" in statements) == use.pii_key
    via = statements["KeyThroughTablesAndQueues"]
    assert via["Resource"] == {"Fn::GetAtt": ["PiiKey", "Arn"]} and set(via["Condition"]["StringEquals"]) == {
        "kms:ViaService"}
    assert set(statements) <= {"Tables", "Queues", "DeadLetterQueues", "KeyThroughTablesAndQueues",
                               "PiiEnvelopes"}
    # Receiving and deleting only where letters wait: never a live queue's messages.
    dead_letter_ids = {queue["Fn::GetAtt"][0]
                       for queue in statements.get("DeadLetterQueues", {}).get("Resource", [])}
    assert all(lid.endswith("DeadLetterQueue") for lid in dead_letter_ids)


def test_policies_exist_for_the_stack_functions_only_and_name_resources_of_the_template():
    policies = {lid for lid, r in RESOURCES.items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
    assert policies == {f"{name.capitalize()}FunctionPolicy" for name, _ in STACK_FUNCTIONS}
    for name, function in STACK_FUNCTIONS:
        use = function_resources(ROOT / function["handler"] / "handler.py", ROOT)
        assert set(use.tables) <= set(_tables_by_logical_name()), name
        assert set(use.queues) - UNDEPLOYED_QUEUES <= set(_queues_by_name()), name


def test_the_derivation_sees_a_table_reached_through_a_lazy_import(tmp_path):
    # GIVEN a handler whose function imports a store that names the rail table
    (tmp_path / "functions" / "f").mkdir(parents=True)
    (tmp_path / "functions" / "f" / "handler.py").write_text(
        "def build():\n    from finfaas.store.s import S\n    return S()\n")
    store = tmp_path / "shared" / "finfaas" / "store"
    store.mkdir(parents=True)
    (tmp_path / "shared" / "finfaas" / "__init__.py").write_text("")
    (store / "__init__.py").write_text("")
    (store / "s.py").write_text('RAIL_TABLE_LOGICAL_NAME = "rail"\n'
                                'class S:\n    queue = SqsQueue("events")\n    keys = KmsDataKeys("k")\n')

    use = function_resources(tmp_path / "functions" / "f" / "handler.py", tmp_path)

    assert (use.tables, use.queues, use.pii_key) == ({"rail"}, {"events"}, True)


def test_the_relay_knows_every_queue_with_a_dead_letter_queue_and_no_other():
    from finfaas.services.dead_letters.model import DEAD_LETTER_QUEUES

    queues = _queues_by_name()
    by_arn = {lid: name for name, (lid, _) in queues.items()}
    redriven = {name: by_arn[properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
                for name, (_, properties) in queues.items() if "RedrivePolicy" in properties}

    assert DEAD_LETTER_QUEUES == redriven
