"""events/: a valid JSON Schema for every event type the suite emits, and a sample that passes it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from finfaas.platform.events import EVENT_TYPES, SCHEMA_URN_PREFIX, EventEnvelope, envelope_from_document

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "events" / "schemas"
SAMPLES = ROOT / "events" / "samples"
CLOUDEVENTS_SCHEMA = ROOT.parent / "shared" / "schemas" / "cloudevents.json"
REQUEST_BODIES = ("webhooks.create-subscription",)
INTERNAL_MESSAGES = ("dev.finfaas.webhook.delivery",)
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def schema_for(name: str) -> dict:
    return load(SCHEMAS / f"{name}.json")


def cloudevents_validator() -> jsonschema.Draft7Validator:
    if not CLOUDEVENTS_SCHEMA.exists():
        pytest.skip(f"{CLOUDEVENTS_SCHEMA} not present")
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    return jsonschema.Draft7Validator(load(CLOUDEVENTS_SCHEMA), format_checker=checker)


def test_there_is_a_schema_and_a_sample_for_every_event_type_and_nothing_else():
    expected = set(EVENT_TYPES) | set(REQUEST_BODIES) | set(INTERNAL_MESSAGES)
    assert {p.stem for p in SCHEMAS.glob("*.json")} == expected
    assert {p.stem for p in SAMPLES.glob("*.json")} == set(EVENT_TYPES) | set(REQUEST_BODIES)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.stem)
def test_every_schema_is_a_valid_draft_2020_12_schema_named_by_its_urn(path):
    schema = load(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"{SCHEMA_URN_PREFIX}{path.stem}"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_sample_event_passes_its_schema_and_the_cloudevents_schema(event_type):
    sample = load(SAMPLES / f"{event_type}.json")
    jsonschema.Draft202012Validator(schema_for(event_type), format_checker=FORMATS).validate(sample)
    cloudevents_validator().validate(sample)
    assert envelope_from_document(sample).document() == sample  # what the relay would emit for it


def test_the_sample_request_body_passes_its_schema():
    sample = load(SAMPLES / "webhooks.create-subscription.json")
    jsonschema.Draft202012Validator(schema_for("webhooks.create-subscription")).validate(sample)


LEDGER_TYPES = [t for t in EVENT_TYPES if t.startswith("ledger.")]
# Events that carry no amount; every other ledger event's sample must carry one, as a string.
LEDGER_TYPES_WITHOUT_AMOUNTS = ("ledger.account.status_changed",)


@pytest.mark.parametrize("event_type", LEDGER_TYPES)
def test_the_schemas_refuse_a_swapped_type(event_type):
    sample = load(SAMPLES / f"{event_type}.json")
    validator = jsonschema.Draft202012Validator(schema_for(event_type), format_checker=FORMATS)

    assert validator.is_valid(sample)
    assert not validator.is_valid({**sample, "type": "ledger.something.else"})


@pytest.mark.parametrize("event_type", [t for t in LEDGER_TYPES if t not in LEDGER_TYPES_WITHOUT_AMOUNTS])
def test_the_schemas_refuse_amounts_as_json_numbers(event_type):
    # GIVEN the sample with its amounts as JSON numbers (a consumer would parse them as floats)
    sample = load(SAMPLES / f"{event_type}.json")
    validator = jsonschema.Draft202012Validator(schema_for(event_type), format_checker=FORMATS)
    as_number = json.loads(json.dumps(sample).replace('"12500"', "12500").replace('"0"', "0"))
    # THEN the sample did carry amounts, and the schema refuses them as numbers
    assert as_number != sample, f"{event_type}: its sample carries no amount to turn into a number"
    assert not validator.is_valid(as_number)


def test_the_transfer_definition_is_the_same_in_every_ledger_schema():
    ledger_types = [t for t in EVENT_TYPES if t.startswith("ledger.")]
    definitions = {json.dumps(schema_for(t)["$defs"], sort_keys=True) for t in ledger_types}
    assert len(definitions) == 1


def test_an_envelope_built_in_code_passes_the_cloudevents_schema():
    from support.events_fakes import T0

    envelope = EventEnvelope("ledger.account.status_changed:a:1", "finfaas/ledger",
                             "ledger.account.status_changed", "a", T0, {"status": "FROZEN"})
    cloudevents_validator().validate(envelope.document())
    validator = jsonschema.Draft202012Validator(schema_for(envelope.type), format_checker=FORMATS)
    validator.validate(envelope.document())
