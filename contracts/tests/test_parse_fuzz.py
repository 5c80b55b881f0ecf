"""Hypothesis against the envelope parser: whatever arrives, `parse` either returns a valid
(envelope, event) or raises a `ContractError` (which a consumer dead-letters). Anything else
would crash a consumer or block its partition. Reasons never quote the input values."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carebridge_contracts import (
    HEADER_TYPE,
    HEADER_VERSION,
    BaseEvent,
    ContractError,
    Envelope,
    entries,
    parse,
    type_from_headers,
)

# Bounded so the suite stays fast; recorded in docs/security.md.
BYTES_EXAMPLES = 400
JSON_EXAMPLES = 300
MUTATIONS_PER_EVENT = 60

CANARY = "Jane Q Canary"  # a PHI-like value: must never be quoted in an error reason

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(
        [
            CANARY,
            "",
            "\x00",
            "9999-12-31T23:59:59-12:00",  # valid ISO, but past year 9999 once in UTC
            "0001-01-01T00:00:00+14:00",  # valid ISO, but before year 1 once in UTC
            "2026-03-02T15:00:00",  # naive
            "2026-02-30T15:00:00Z",
            "NaN",
            "1e309",
            "00000000-0000-0000-0000-000000000000",
            "x" * 5000,
        ]
    )
    | st.sampled_from([2**63, -(2**63) - 1, 10**400, float("inf"), float("nan"), -0.0])
)
offsets = st.integers(min_value=-(24 * 60) + 1, max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
timestamps = (
    st.datetimes(timezones=offsets).map(datetime.isoformat)
    # the first and last day a datetime can hold: an offset may carry them out of range in UTC
    | st.datetimes(max_value=datetime(1, 1, 1, 23, 59), timezones=offsets).map(datetime.isoformat)
    | st.datetimes(min_value=datetime(9999, 12, 31), timezones=offsets).map(datetime.isoformat)
    | st.datetimes().map(datetime.isoformat)  # naive
    | st.text(alphabet="0123456789-:TZ+.", max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


def _assert_parse_contained(raw: bytes | str) -> None:
    try:
        envelope, event = parse(raw)
    except ContractError as exc:
        assert CANARY not in str(exc), f"the reason quotes the input: {exc}"
        return
    assert isinstance(event, BaseEvent)
    assert event.patient_id == envelope.subject


@settings(max_examples=BYTES_EXAMPLES, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_escape_as_anything_but_contract_errors(raw: bytes) -> None:
    _assert_parse_contained(raw)


@settings(max_examples=JSON_EXAMPLES, deadline=None)
@given(json_values)
def test_arbitrary_json_documents_never_escape_as_anything_but_contract_errors(doc: Any) -> None:
    _assert_parse_contained(json.dumps(doc))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = _replace(doc[head], rest, value)
    return copy


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        return _replace(doc, (head,), _delete(doc[head], rest))
    if isinstance(doc, dict):
        return {k: v for k, v in doc.items() if k != head}
    return [v for i, v in enumerate(doc) if i != head]


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> bytes:
    """A valid envelope changed in one to three places: a value replaced, a key dropped or
    added, the type, version or a timestamp swapped; then maybe the bytes cut or flipped."""
    types = [entry.event_type for entry in entries()]
    doc: Any = document
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        kinds = ["replace", "delete", "add", "retype", "version", "retime"]
        kind = draw(st.sampled_from(kinds))
        timed = [p for p in paths if p and str(p[-1]).endswith("_at")]
        if kind == "retime" and timed:
            doc = _replace(doc, draw(st.sampled_from(timed)), draw(timestamps))
        elif kind == "replace":
            doc = _replace(doc, draw(st.sampled_from(paths)), draw(json_values))
        elif kind == "delete" and len(paths) > 1:
            doc = _delete(doc, draw(st.sampled_from(paths[1:])))
        elif kind == "add" and isinstance(doc, dict):
            target = draw(st.sampled_from([(), ("data",)]))
            node = doc.get("data") if target else doc
            if isinstance(node, dict):
                added = {**node, draw(st.text(max_size=10)): draw(json_values)}
                doc = _replace(doc, target, added)
        elif kind == "retype" and isinstance(doc, dict):
            doc = {**doc, "type": draw(st.sampled_from(types) | st.text(max_size=12))}
        elif kind == "version" and isinstance(doc, dict):
            doc = {**doc, "version": draw(st.sampled_from([0, -1, 2, 2**70, "1", 1.0, True]))}
    raw = json.dumps(doc).encode()
    cut = draw(st.sampled_from(["none", "truncate", "flip"]))
    if cut == "truncate":
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    elif cut == "flip" and raw:
        at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    return raw


@settings(max_examples=MUTATIONS_PER_EVENT, deadline=None)
@given(data=st.data())
def test_mutated_envelopes_never_escape_as_anything_but_contract_errors(
    example_event: BaseEvent, data: st.DataObject
) -> None:
    wrapped = Envelope.wrap(example_event, producer="test", sequence=1, correlation_id=uuid4())
    raw = data.draw(mutated(json.loads(wrapped.to_bytes())))
    _assert_parse_contained(raw)


def test_timestamps_that_overflow_in_utc_are_contract_errors(example_event: BaseEvent) -> None:
    """Regression: an offset that pushes a timestamp past year 9999 (or before year 1) in UTC
    raised OverflowError, which no consumer treats as poison."""
    wrapped = json.loads(
        Envelope.wrap(example_event, producer="t", sequence=1, correlation_id=uuid4()).to_bytes()
    )
    for late in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"):
        timed = {key: late for key in wrapped["data"] if key.endswith("_at")}
        for doc in (
            {**wrapped, "occurred_at": late},
            {**wrapped, "data": {**wrapped["data"], **timed}},
        ):
            if doc["data"] == wrapped["data"] and doc["occurred_at"] == wrapped["occurred_at"]:
                continue  # the event has no timestamp of its own
            with pytest.raises(ContractError):
                parse(json.dumps(doc))


header_values = st.none() | st.binary(max_size=24) | st.text(max_size=24)


@settings(max_examples=BYTES_EXAMPLES, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([HEADER_TYPE, HEADER_VERSION]) | st.text(max_size=8), header_values
        ),
        max_size=6,
    )
)
def test_type_from_headers_never_raises(headers: list[tuple[str, bytes | str | None]]) -> None:
    """Regression: a ce-type or ce-version header that was null or not UTF-8 raised, and the
    consumer runtime (which reads it for every record) then retried that record forever."""
    routed = type_from_headers(headers)
    assert routed is None or (
        isinstance(routed[0], str) and routed[0] and isinstance(routed[1], int)
    )
