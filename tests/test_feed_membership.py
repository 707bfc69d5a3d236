"""The bodies of joint-feed membership requests and outcomes (schemas/FEEDS.md 16): what
the parsers take, and that anything else is a ValidationError, never a crash."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.errors import ValidationError
from office_node.feeds import membership_outcome, parse_membership_outcome, parse_membership_request

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
OUTCOME = st.fixed_dictionaries({
    "office": st.sampled_from(["LA-SVK", "la-svk", "LA", 7]),
    "change": st.sampled_from(["add", "remove", "swap"]),
    "result": st.sampled_from(["added", "removed", "already_member", "not_member", "refused", "done"]),
    "reason": st.none() | st.text(max_size=600) | st.integers(),
})  # fmt: skip


def _bulletin(body: str) -> SimpleNamespace:
    return SimpleNamespace(id="01J0000000000000000000000A", sender="TH-TCCC", releasable_to=("LA", "TH"), body=body)


def test_an_outcome_the_owner_writes_is_read_back_as_written() -> None:
    outcomes = [{"office": "LA-SVK", "change": "add", "result": "already_member", "reason": None},
                {"office": "LA-XYZ", "change": "add", "result": "refused", "reason": "no current keys"}]  # fmt: skip
    post = membership_outcome(_bulletin("{}"), "mekong-border", outcomes, None)
    assert post["to"] == ["TH-TCCC"] and post["in_reply_to"] == "01J0000000000000000000000A"
    assert parse_membership_outcome(_bulletin(post["body"])) == {
        "feed": "mekong-border", "request": "01J0000000000000000000000A", "epoch": None, "outcomes": outcomes}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, st.fixed_dictionaries(
    {"feed": JSON, "request": JSON, "epoch": st.none() | st.integers() | st.booleans(), "outcomes": st.lists(OUTCOME, max_size=3)})))  # fmt: skip
def test_any_outcome_body_is_taken_whole_or_refused_as_invalid(value) -> None:
    try:
        data = parse_membership_outcome(_bulletin(json.dumps(value)))
    except ValidationError:
        return
    assert isinstance(data["feed"], str) and (data["epoch"] is None or data["epoch"] >= 1)
    for o in data["outcomes"]:
        assert o["result"] in {"add": ("added", "already_member", "refused"), "remove": ("removed", "not_member", "refused")}[o["change"]]


@settings(max_examples=200, deadline=None)
@given(st.one_of(JSON, st.text(max_size=50)))
def test_any_request_body_is_taken_whole_or_refused_as_invalid(value) -> None:
    body = value if isinstance(value, str) else json.dumps(value)
    try:
        data = parse_membership_request(_bulletin(body))
    except ValidationError:
        return
    assert set(data) == {"feed", "add", "remove"}


@pytest.mark.parametrize("body", ["not json", "[]", '{"feed": "x", "request": "y", "epoch": 0, "outcomes": []}'])
def test_a_malformed_outcome_is_a_validation_error(body: str) -> None:
    with pytest.raises(ValidationError):
        parse_membership_outcome(_bulletin(body))
