"""FLASH escalation: a FLASH bulletin this node sent that some office recipient's person
has not acknowledged by its deadline (set when it was queued: now plus
``flash_ack_timeout_s``) is escalated once, to the application (``hooks.on_escalation``)
and in the metrics. Acknowledgements come back as signed receipts (``Receiver``)."""

from __future__ import annotations

import asyncio
import inspect
import logging

from bus.transport.node_core import Core, Escalation

log = logging.getLogger("blo.bus.node")


class FlashWatch:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.options = core.options
        self.hooks = core.hooks
        self.metrics = core.metrics

    async def run(self) -> None:
        """Check every quarter of the timeout (at most every second) until the node closes."""
        assert self.core.outbox is not None
        period = max(0.05, min(1.0, self.options.flash_ack_timeout_s / 4))
        while not self.core.closing:
            await asyncio.sleep(period)
            try:
                await self.check_flash()
            except Exception:  # the watcher must outlive a bad callback
                log.exception("FLASH acknowledgement check failed")

    async def check_flash(self) -> list[Escalation]:
        """Escalate FLASH bulletins past their deadline; returns the new escalations."""
        assert self.core.outbox is not None
        now = self.core.clock()
        overdue = self.core.outbox.check_flash(now)
        self.metrics.flash_unacknowledged.set(len(overdue))
        fresh = []
        for o in overdue:
            if o.escalated_at is not None:
                continue
            self.core.outbox.mark_escalated(o.bulletin_id, now_ms=now)
            self.metrics.flash_escalations.inc()
            esc = Escalation(o.bulletin_id, o.posted_at, o.missing)
            fresh.append(esc)
            log.error("FLASH %s not acknowledged by %s in time", o.bulletin_id, ", ".join(o.missing))
            if self.hooks.on_escalation is not None:
                result = self.hooks.on_escalation(esc)
                if inspect.isawaitable(result):
                    await result
        return fresh
