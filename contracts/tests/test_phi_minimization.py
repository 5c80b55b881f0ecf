"""No event schema has a field for names, contact details, dates of birth or free text."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, StringConstraints

from carebridge_contracts import BaseEvent, Envelope, entries
from carebridge_contracts._schemas import SCHEMA_DIR, load
from carebridge_contracts.events.common import Code, OpaqueId, UtcDatetime
from carebridge_contracts.phi import (
    ALLOWED,
    PROBES,
    Violation,
    explain,
    field_words,
    model_violations,
    schema_violations,
)

REGISTERED: list[type[BaseModel]] = [entry.model for entry in entries()]
CHECKED: list[type[BaseModel]] = [*REGISTERED, Envelope]


@pytest.mark.parametrize("model", CHECKED, ids=lambda m: m.__name__)
def test_model_has_no_field_that_can_carry_phi(model: type[BaseModel]) -> None:
    found = model_violations(model)
    assert not found, explain(found)


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.json")), ids=lambda p: p.name)
def test_committed_schema_has_no_field_that_can_carry_phi(path: Any) -> None:
    schema = load(path)
    found = schema_violations(schema, schema["title"])
    assert not found, explain(found)


def test_every_allowed_exception_is_still_needed() -> None:
    raw = [v.path for m in CHECKED for v in model_violations(m, allowed={})]
    assert sorted(set(raw)) == sorted(ALLOWED), "remove exceptions no field needs any more"


def test_the_probes_fit_the_field_types_events_use() -> None:
    """Ids and codes reject every probe; that is what lets them pass the shape rule."""

    class Ids(BaseModel):
        patient_id: OpaqueId
        template: Code

    assert model_violations(Ids) == []
    assert {what for what, _ in PROBES} == {
        "a name",
        "an e-mail address",
        "a phone number",
        "prose",
    }


# --- the rule fails on deliberately bad models ------------------------------------------------


class _Bad(BaseEvent):
    event_type: ClassVar[str] = "Bad"
    event_version: ClassVar[int] = 1


class PatientNamed(_Bad):
    patient_name: OpaqueId  # even an id-shaped value may not be called a name


class EmailAddress(_Bad):
    email: str


class Birthday(_Bad):
    date_of_birth: date


class CamelContact(_Bad):
    contactPhone: Code


class FreeNotes(_Bad):
    notes: Annotated[str, StringConstraints(max_length=200)]


class FreeReason(_Bad):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Label(_Bad):
    label: str  # an innocent name, but any text fits


class LoosePattern(_Bad):
    code: Annotated[str, StringConstraints(pattern=r"^.+$")]


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Code
    at: UtcDatetime


class NestedFreeText(_Bad):
    items: list[Comment]


class FreeMap(_Bad):
    attributes: dict[str, int]


class AnyValue(_Bad):
    payload: Any


class ExtraAllowed(_Bad):
    model_config = ConfigDict(extra="allow", frozen=True)


BAD: list[tuple[type[BaseModel], set[tuple[str, str]]]] = [
    (PatientNamed, {("PatientNamed.patient_name", "name")}),
    (EmailAddress, {("EmailAddress.email", "name"), ("EmailAddress.email", "shape")}),
    (Birthday, {("Birthday.date_of_birth", "name")}),
    (CamelContact, {("CamelContact.contactPhone", "name")}),
    (FreeNotes, {("FreeNotes.notes", "name"), ("FreeNotes.notes", "shape")}),
    (FreeReason, {("FreeReason.reason", "name"), ("FreeReason.reason", "shape")}),
    (Label, {("Label.label", "shape")}),
    (LoosePattern, {("LoosePattern.code", "shape")}),
    (NestedFreeText, {("NestedFreeText.items[].comment", "name")}),
    (FreeMap, {("FreeMap.attributes", "shape")}),
    (AnyValue, {("AnyValue.payload", "shape")}),
    (ExtraAllowed, {("ExtraAllowed", "shape")}),
]


@pytest.mark.parametrize(("model", "expected"), BAD, ids=[m.__name__ for m, _ in BAD])
def test_rule_fails_on_a_model_that_can_carry_phi(
    model: type[BaseModel], expected: set[tuple[str, str]]
) -> None:
    found = model_violations(model)
    assert {(v.path, v.rule) for v in found} == expected, explain(found)
    message = explain(found)
    assert all(path in message for path, _ in expected)
    assert "carebridge_contracts.phi.ALLOWED" in message, "the message says what to do"


class CodedReasons(_Bad):
    reason_code: Literal["no_capacity", "other"]
    reasons: list[Literal["phq9_item9", "cssrs_q4"]]
    message_count: int
    expires_on: date
    sent_at: UtcDatetime


def test_codes_numbers_and_dates_pass_even_under_free_text_names() -> None:
    assert model_violations(CodedReasons) == []


def test_an_allowed_path_is_not_reported() -> None:
    assert model_violations(Label, allowed={"Label.label": "test"}) == []
    assert [v.path for v in model_violations(Envelope, allowed={})] == ["Envelope.data"]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("dateOfBirth", ["date", "of", "birth"]),
        ("patient_first_name", ["patient", "first", "name"]),
        ("eMail", ["e", "mail"]),
        ("phq9_total", ["phq9", "total"]),
    ],
)
def test_field_words(name: str, words: list[str]) -> None:
    assert field_words(name) == words


def test_violation_reads_as_one_line() -> None:
    assert str(Violation("X.notes", "name", "why")) == "X.notes (name): why"
