"""The triage queue on its own: the workflow's moves, paging through a long queue while
new items arrive, and an assignee set and cleared."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import errors
from office_node.db import open_database
from office_node.triage import CLOSED, IN_REVIEW, NEW, Triage
from tests.helpers import NOW


@pytest.fixture
def triage(tmp_path: Path) -> Triage:
    return Triage(open_database(tmp_path / "node.db"))


def _ids(n: int) -> list[str]:
    return [f"01J{i:023d}" for i in range(n)]


def test_paging_walks_the_whole_queue_newest_first_without_repeats_or_gaps(triage: Triage) -> None:
    ids = _ids(25)
    for i, bid in enumerate(ids):
        triage.add(bid, at_ms=NOW + i // 3)  # several items share a time: the tiebreak is tested too
    seen: list[str] = []
    cursor = None
    while True:
        page = triage.items(limit=7, cursor=cursor)
        seen += [i.bulletin_id for i in page.items]
        if page.next_cursor is None:
            break
        triage.add(f"01K{len(seen):023d}", at_ms=NOW + 1000)  # new arrivals go to the top, not into later pages
        cursor = page.next_cursor
    assert seen == list(reversed(ids))


def test_a_page_of_one_state_and_the_last_page_has_no_cursor(triage: Triage) -> None:
    for i, bid in enumerate(_ids(5)):
        triage.add(bid, at_ms=NOW + i)
    triage.move(_ids(5)[1], CLOSED, by="analyst", at_ms=NOW + 10)
    page = triage.items(state=NEW, limit=4)
    assert [i.bulletin_id for i in page.items] == [_ids(5)[k] for k in (4, 3, 2, 0)] and page.next_cursor is None


@pytest.mark.parametrize(("limit", "cursor"), [(0, None), (201, None), (10, "not a cursor"), (10, "MTIz")])
def test_bad_limits_and_cursors_are_named(triage: Triage, limit: int, cursor: str | None) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        triage.items(limit=limit, cursor=cursor)
    assert caught.value.field in ("limit", "cursor")


def test_an_assignee_is_kept_by_a_move_and_cleared_by_none(triage: Triage) -> None:
    bid = _ids(1)[0]
    triage.add(bid, at_ms=NOW)
    assert triage.move(bid, IN_REVIEW, by="a", at_ms=NOW + 1, assignee="somchai").assignee == "somchai"
    assert triage.move(bid, IN_REVIEW, by="a", at_ms=NOW + 2).assignee == "somchai"
    assert triage.move(bid, IN_REVIEW, by="a", at_ms=NOW + 3, assignee=None).assignee is None


def test_a_move_the_workflow_does_not_allow_is_refused(triage: Triage) -> None:
    bid = _ids(1)[0]
    triage.add(bid, at_ms=NOW)
    triage.move(bid, CLOSED, by="a", at_ms=NOW + 1)
    with pytest.raises(errors.ValidationError, match="can go to in_review, not new"):
        triage.move(bid, NEW, by="a", at_ms=NOW + 2)
