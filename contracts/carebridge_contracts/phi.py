"""The PHI minimisation rule for event schemas: no field can carry a name, a contact detail,
a date of birth or free text (HIPAA minimum necessary; see the README).

Two checks run over a model's JSON Schema, nested models and the envelope included:

- **name**: a field whose name says it holds a person's name, a contact detail or a date of
  birth fails whatever its type. A field whose name says free text (notes, comment, reason,
  message, ...) fails unless every string in it is a fixed code (enum or const).
- **shape**: every string must be a fixed code (enum/const), a UUID or a date/time (format), or
  be constrained (pattern, length) so that it rejects each of `PROBES`: a name with a space, an
  e-mail address, a formatted phone number and a sentence. An object must list its properties:
  a free-form map (``dict[str, ...]``, ``extra="allow"``) or a value of any type fails.

`ALLOWED` lists the justified exceptions by path; anything else is a violation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

JsonSchema = Mapping[str, Any]

# Field-name words, compared with the field name's words (snake_case and camelCase split).
IDENTITY_WORDS = frozenset(
    {"name", "names", "firstname", "lastname", "fullname", "surname", "nickname", "maiden"}
)
CONTACT_WORDS = frozenset(
    {
        "email", "emails", "mail", "phone", "phones", "telephone", "tel", "mobile", "cell",
        "fax", "address", "addresses", "street", "city", "zip", "zipcode", "postcode",
        "postal", "contact", "contacts",
    }
)  # fmt: skip
BIRTH_WORDS = frozenset({"dob", "birth", "birthdate", "birthday", "born"})
FREE_TEXT_WORDS = frozenset(
    {
        "note", "notes", "comment", "comments", "description", "message", "messages", "text",
        "body", "narrative", "summary", "answer", "answers", "reason", "reasons", "details",
        "remark", "remarks", "freetext", "content", "story",
    }
)  # fmt: skip

# What a string that can carry PHI would accept. A string field must reject every one.
PROBES: tuple[tuple[str, str], ...] = (
    ("a name", "Jane Doe"),
    ("an e-mail address", "jane@example.com"),
    ("a phone number", "+1 555 010 0199"),
    ("prose", "feels low, sleeps badly"),
)
SAFE_FORMATS = frozenset({"uuid", "date-time", "date", "time", "duration"})

ALLOWED: Mapping[str, str] = {
    "Envelope.data": (
        "the event payload: parse() validates it against the registered event model, and "
        "every registered model is checked by this rule on its own"
    ),
}

_HOW_TO_FIX = (
    "events carry ids, codes and scores only: keep the value in the service that owns it and "
    "publish an id or a code; if the field is truly safe, add its path to "
    "carebridge_contracts.phi.ALLOWED with the reason"
)


@dataclass(frozen=True, slots=True)
class Violation:
    path: str  # e.g. "AppointmentBooked.notes", "Bad.items[].comment"
    rule: str  # "name" or "shape"
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.rule}): {self.reason}"


def field_words(name: str) -> list[str]:
    """`dateOfBirth` -> ["date", "of", "birth"]; `patient_first_name` -> [..., "first", "name"]."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if word]


def model_violations(
    model: type[BaseModel], *, allowed: Mapping[str, str] = ALLOWED
) -> list[Violation]:
    """Violations of `model` (e.g. an event class or `Envelope`), minus the allowed paths."""
    return schema_violations(model.model_json_schema(), model.__name__, allowed=allowed)


def schema_violations(
    schema: JsonSchema, root: str, *, allowed: Mapping[str, str] = ALLOWED
) -> list[Violation]:
    """Violations in a JSON Schema; paths start at `root` (the model name)."""
    walker = _Walker(schema.get("$defs", {}))
    return [v for v in walker.walk(schema, root) if v.path not in allowed]


def explain(violations: list[Violation]) -> str:
    """A failure message: every violation, then what to do about it."""
    lines = [f"- {v}" for v in violations]
    return "event schemas can carry PHI:\n" + "\n".join(lines) + f"\n{_HOW_TO_FIX}."


class _Walker:
    def __init__(self, defs: Mapping[str, JsonSchema]) -> None:
        self._defs = defs
        self._expanding: list[str] = []  # $refs being walked (a recursive model stops here)

    def walk(self, schema: JsonSchema, path: str) -> Iterator[Violation]:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in self._expanding:
                return
            self._expanding.append(ref)
            yield from self.walk(self._resolve(ref), path)
            self._expanding.pop()
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in schema.get(key, ()):
                yield from self.walk(branch, path)
        kinds = _types(schema)
        if not kinds and not _is_combinator(schema) and "enum" not in schema:
            if "const" not in schema:
                yield Violation(path, "shape", "a value of any type can carry anything")
            return
        if "string" in kinds:
            yield from _string_violations(schema, path)
        if "array" in kinds:
            for item in [schema.get("items"), *schema.get("prefixItems", ())]:
                if isinstance(item, Mapping):
                    yield from self.walk(item, f"{path}[]")
        if "object" in kinds:
            yield from self._object_violations(schema, path)

    def _object_violations(self, schema: JsonSchema, path: str) -> Iterator[Violation]:
        properties: Mapping[str, JsonSchema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        if extra not in (None, False) or (not properties and extra is None):
            yield Violation(
                path, "shape", "a free-form object: its keys and values can carry anything"
            )
        for name, sub in properties.items():
            field_path = f"{path}.{name}"
            yield from self._name_violations(name, sub, field_path)
            yield from self.walk(sub, field_path)

    def _name_violations(self, name: str, schema: JsonSchema, path: str) -> Iterator[Violation]:
        words = set(field_words(name))
        for vocabulary, what in (
            (IDENTITY_WORDS, "a person's name"),
            (CONTACT_WORDS, "a contact detail"),
            (BIRTH_WORDS, "a date of birth"),
        ):
            hits = sorted(words & vocabulary)
            if hits:
                yield Violation(path, "name", f"the name says {what} ({', '.join(hits)})")
        free_text = sorted(words & FREE_TEXT_WORDS)
        if free_text and not self._only_codes(schema):
            yield Violation(
                path,
                "name",
                f"the name says free text ({', '.join(free_text)}) and the value is not a "
                "fixed code (enum or const)",
            )

    def _only_codes(self, schema: JsonSchema) -> bool:
        """Every string the schema admits is one of a fixed set (enum/const), or none is a string."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in self._expanding:
                return True
            self._expanding.append(ref)
            try:
                return self._only_codes(self._resolve(ref))
            finally:
                self._expanding.pop()
        branches = [b for key in ("anyOf", "oneOf", "allOf") for b in schema.get(key, ())]
        if not all(self._only_codes(b) for b in branches):
            return False
        if "enum" in schema or "const" in schema:
            return True
        kinds = _types(schema)
        if not kinds:
            return bool(branches)
        if "string" in kinds or "object" in kinds:
            return False
        if "array" in kinds:
            items = schema.get("items")
            return not isinstance(items, Mapping) or self._only_codes(items)
        return True

    def _resolve(self, ref: str) -> JsonSchema:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self._defs:
            raise ValueError(f"cannot resolve {ref!r}")
        return self._defs[ref[len(prefix) :]]


def _types(schema: JsonSchema) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {str(k) for k in kind}
    if "properties" in schema or "additionalProperties" in schema:
        return {"object"}
    return set()


def _is_combinator(schema: JsonSchema) -> bool:
    return any(key in schema for key in ("anyOf", "oneOf", "allOf"))


def _string_violations(schema: JsonSchema, path: str) -> Iterator[Violation]:
    if "enum" in schema or "const" in schema:
        return
    fmt = schema.get("format")
    if isinstance(fmt, str):
        if fmt not in SAFE_FORMATS:
            yield Violation(path, "shape", f"a string of format {fmt!r}")
        return
    admitted = [what for what, probe in PROBES if _admits(schema, probe)]
    if admitted:
        constraint = "its pattern" if "pattern" in schema else "no pattern, enum or format"
        yield Violation(
            path,
            "shape",
            f"a free-form string ({constraint}) that admits {', '.join(admitted)}",
        )


def _admits(schema: JsonSchema, value: str) -> bool:
    if len(value) < int(schema.get("minLength", 0)):
        return False
    if "maxLength" in schema and len(value) > int(schema["maxLength"]):
        return False
    pattern = schema.get("pattern")
    return pattern is None or re.search(str(pattern), value) is not None
