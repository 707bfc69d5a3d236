"""The node database's deferred commits: a batch of writes that waits for one flush."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from office_node.db import open_database


def _synchronous(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA synchronous").fetchone()[0]  # 1 NORMAL, 2 FULL


async def test_deferred_writes_skip_the_flush_for_their_task_only_and_sync_keeps_them(tmp_path: Path) -> None:
    db = open_database(tmp_path / "node.db")
    with db.write() as c:
        c.execute("CREATE TABLE t (n INTEGER)")
        assert _synchronous(c) == 2
    inside = asyncio.Event()
    release = asyncio.Event()
    seen: dict[str, int] = {}

    async def batch() -> None:
        with db.deferred():
            with db.write() as c:
                c.execute("INSERT INTO t VALUES (1)")
                seen["deferred"] = _synchronous(c)
            inside.set()
            await release.wait()  # another task writes while this one is still deferred
            with db.write() as c:
                c.execute("INSERT INTO t VALUES (2)")
        db.sync()

    async def request() -> None:
        await inside.wait()
        with db.write() as c:
            c.execute("INSERT INTO t VALUES (3)")
            seen["other task"] = _synchronous(c)
        release.set()

    await asyncio.gather(batch(), request())
    assert seen == {"deferred": 1, "other task": 2}
    with db.read() as c:
        assert _synchronous(c) == 2  # back to FULL after every deferred commit
    db.close()
    reopened = sqlite3.connect(tmp_path / "node.db")
    assert sorted(n for (n,) in reopened.execute("SELECT n FROM t")) == [1, 2, 3]
    reopened.close()

