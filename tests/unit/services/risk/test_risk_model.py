"""The stored form of an assessment: what the risk table holds reads back unchanged, and is the very
JSON the API shows, so records written before and after a change of module stay readable."""

from __future__ import annotations

from finfaas.domain.risk_rules import Assessment, Decision, Finding, Verdict
from finfaas.services.risk.api import assessment_view
from finfaas.services.risk.model import assessment_from_json, assessment_to_json

ASSESSMENT = Assessment("tr-1", Decision.REVIEW, 40, (
    Finding("velocity", Verdict.PASS, 0, "2 transfers this hour"),
    Finding("new_payee", Verdict.FLAG, 40, "first transfer to pf_ab12 — née «Zoë»"),
))


def test_an_assessment_reads_back_as_it_was_stored():
    # GIVEN an assessment with a passing and a flagged finding
    # WHEN it is stored and read back
    # THEN every field, the findings' order included, is unchanged
    assert assessment_from_json(assessment_to_json(ASSESSMENT)) == ASSESSMENT


def test_the_stored_form_is_the_api_view_json():
    assert assessment_to_json(ASSESSMENT) == assessment_view(ASSESSMENT).model_dump_json()
