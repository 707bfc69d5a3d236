"""Imported drafts in the triage queue on their own: one draft per source version, the
workflow's moves (sent is final), paging, notes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus import errors
from office_node.db import open_database
from office_node.triage import Drafts
from tests.helpers import NOW

FIELDS = {"title": "t", "tlp": "AMBER"}
DERIVED = {"tlp": "AMBER", "releasable_to": ["TH"], "local_only": False, "reasons": ["why"]}


@pytest.fixture
def drafts(tmp_path: Path) -> Drafts:
    return Drafts(open_database(tmp_path / "node.db"))


def _add(drafts: Drafts, i: int, *, at: int = NOW) -> str:
    draft_id = f"01J{i:023d}"
    assert drafts.add(draft_id, source=f"misp:{i}@1", format="misp", fields=FIELDS, derived=DERIVED, warnings=[], at_ms=at, by="a")
    return draft_id


def test_a_source_version_is_queued_once(drafts: Drafts) -> None:
    draft_id = _add(drafts, 1)
    assert not drafts.add("01J99999999999999999999999", source="misp:1@1", format="misp", fields={}, derived=DERIVED,
                          warnings=[], at_ms=NOW, by="a")  # fmt: skip
    assert drafts.by_source("misp:1@1").id == draft_id and drafts.by_source("misp:1@2") is None
    item = drafts.get(draft_id)
    assert (item.state, item.fields, item.derived, item.sent_id) == ("new", FIELDS, DERIVED, None)


def test_the_workflow_allows_review_and_closing_and_a_sent_draft_changes_no_more(drafts: Drafts) -> None:
    draft_id = _add(drafts, 1)
    assert drafts.update(draft_id, by="a", at_ms=NOW + 1, state="in_review", assignee="analyst").assignee == "analyst"
    assert drafts.update(draft_id, by="a", at_ms=NOW + 2, fields={"title": "new"}).fields == {"title": "new"}
    assert drafts.update(draft_id, by="a", at_ms=NOW + 3, state="closed").state == "closed"
    with pytest.raises(errors.ValidationError, match="can go to in_review, not new"):
        drafts.update(draft_id, by="a", at_ms=NOW + 4, state="new")
    with pytest.raises(errors.ValidationError, match="send it"):
        drafts.update(draft_id, by="a", at_ms=NOW + 4, state="sent")
    drafts.update(draft_id, by="a", at_ms=NOW + 5, state="in_review")
    sent = drafts.mark_sent(draft_id, "01J00000000000000000000777", by="a", at_ms=NOW + 6, fields={"title": "final"})
    assert (sent.state, sent.sent_id, sent.fields) == ("sent", "01J00000000000000000000777", {"title": "final"})
    with pytest.raises(errors.ValidationError, match="changes no more"):
        drafts.update(draft_id, by="a", at_ms=NOW + 7, state="closed")
    with pytest.raises(errors.NotFound):
        drafts.get("01J00000000000000000000000")


def test_paging_walks_every_draft_newest_first_and_notes_stay_with_their_draft(drafts: Drafts) -> None:
    ids = [_add(drafts, i, at=NOW + i // 3) for i in range(12)]
    seen, cursor = [], None
    while True:
        items, cursor = drafts.items(limit=5, cursor=cursor)
        seen += [d.id for d in items]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert drafts.counts() == {"new": 12, "in_review": 0, "sent": 0, "closed": 0}
    drafts.note(ids[0], "first look", by="a", at_ms=NOW)
    assert [n.text for n in drafts.notes(ids[0])] == ["first look"] and drafts.notes(ids[1]) == []
    with pytest.raises(errors.ValidationError):
        drafts.note(ids[0], "  ", by="a", at_ms=NOW)
