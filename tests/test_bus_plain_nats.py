"""The key bus tests again, on nats-py's public API only (``nats_private.use_private(False)``,
what ``BLO_NATS_PLAIN=1`` or a nats-py that fails the import check gives): the same
behaviour must hold without a single private shortcut. The autouse fixture makes any use
of a shortcut fail the test, so these prove the plain path ran; the other modules run the
same tests on the shortcuts (the default).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from nats.aio.client import Client as NatsClient

from bus.transport import nats_private
from tests.test_bus_client import (
    streams_client,  # noqa: F401  (the fixture of the tests below)
    test_a_denied_publish_is_permission_denied_naming_the_subject,
    test_a_denied_subject_inside_a_batch_is_permission_denied_and_the_rest_are_stored,
    test_a_payload_over_the_servers_limit_is_an_error_result_and_the_rest_go_out,
    test_a_window_across_streams_goes_as_one_batch_per_stream,
    test_a_window_reports_each_copy_stored_refused_or_without_a_stream_in_order,
    test_acked_messages_are_not_delivered_again,
    test_one_refused_message_in_a_batch_holds_back_none_behind_it,
    test_republishing_with_the_same_id_is_stored_once,
)
from tests.test_bus_delivery import (
    test_a_backlog_is_acknowledged_by_a_few_signed_receipts_covering_many_bulletins,
    test_a_batch_is_settled_before_it_counts_as_delivered_and_a_failed_settle_redelivers_it,
    test_a_delivered_flash_escalates_until_a_person_acknowledges_it,
    test_a_thousand_bulletins_posted_while_nats_is_down_arrive_once_after_a_node_restart,
    test_flash_behind_a_5000_routine_backlog_in_the_inbox_is_handed_over_first,
    test_flash_posted_behind_5000_queued_routine_bulletins_is_delivered_first,
    test_garbage_and_tampered_messages_on_an_inbox_land_in_quarantine_with_their_reason,
    test_receipts_flow_back_delivered_then_read,
    test_sigkill_of_the_server_mid_stream_loses_nothing_and_duplicates_nothing,
    test_submit_returns_the_sealed_copy_and_state_changes_reach_the_application,
)

pytestmark = pytest.mark.timeout(90)

__all__ = [  # collected here too, on the plain path
    "test_a_backlog_is_acknowledged_by_a_few_signed_receipts_covering_many_bulletins",
    "test_a_batch_is_settled_before_it_counts_as_delivered_and_a_failed_settle_redelivers_it",
    "test_a_delivered_flash_escalates_until_a_person_acknowledges_it",
    "test_a_denied_publish_is_permission_denied_naming_the_subject",
    "test_a_denied_subject_inside_a_batch_is_permission_denied_and_the_rest_are_stored",
    "test_a_payload_over_the_servers_limit_is_an_error_result_and_the_rest_go_out",
    "test_a_thousand_bulletins_posted_while_nats_is_down_arrive_once_after_a_node_restart",
    "test_a_window_across_streams_goes_as_one_batch_per_stream",
    "test_a_window_reports_each_copy_stored_refused_or_without_a_stream_in_order",
    "test_acked_messages_are_not_delivered_again",
    "test_flash_behind_a_5000_routine_backlog_in_the_inbox_is_handed_over_first",
    "test_flash_posted_behind_5000_queued_routine_bulletins_is_delivered_first",
    "test_garbage_and_tampered_messages_on_an_inbox_land_in_quarantine_with_their_reason",
    "test_one_refused_message_in_a_batch_holds_back_none_behind_it",
    "test_receipts_flow_back_delivered_then_read",
    "test_republishing_with_the_same_id_is_stored_once",
    "test_sigkill_of_the_server_mid_stream_loses_nothing_and_duplicates_nothing",
    "test_submit_returns_the_sealed_copy_and_state_changes_reach_the_application",
]


@pytest.fixture(autouse=True)
def plain_nats(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """nats-py's public API only; a shortcut taken anyway fails the test."""

    def shortcut_taken(*args: object, **kwargs: object) -> None:
        raise AssertionError("a nats-py private shortcut was used on the plain path")

    monkeypatch.setattr(nats_private._Direct, "__init__", shortcut_taken)
    monkeypatch.setattr(nats_private, "_write", shortcut_taken)
    before = nats_private.use_private(False)
    try:
        yield
    finally:
        nats_private.use_private(before)


def test_the_switch_turns_the_shortcuts_off_and_back_on_only_where_nats_py_has_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not nats_private.private_in_use()
    assert nats_private.use_private(True) is (nats_private._PROBLEM is None)
    monkeypatch.setattr(nats_private, "_PROBLEM", "Client._send_command is not a coroutine function")
    assert nats_private.use_private(True) is False


def test_the_import_check_names_a_private_attribute_nats_py_no_longer_has(monkeypatch: pytest.MonkeyPatch) -> None:
    assert nats_private._private_problem() is None  # the pinned nats-py has them all
    monkeypatch.delattr(NatsClient, "_flush_pending")
    assert nats_private._private_problem() == "Client._flush_pending is not a coroutine function"


def test_blo_nats_plain_in_the_environment_starts_on_the_plain_path() -> None:
    code = "from bus.transport import nats_private; print(nats_private.private_in_use())"
    env = {**os.environ, "BLO_NATS_PLAIN": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
    env["BLO_NATS_PLAIN"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "True"
