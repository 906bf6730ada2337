"""The on-disk half of the response cache: wire chunks as JSON rows in one sqlite file.

Kept apart from `cache.py` (keys, the in-memory LRU, the replaying provider) because it is the
only part that touches the disk and threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from koma.providers.base import WireChunk
from koma.types import ToolCall, Usage

# Same logger as the rest of the cache, so one logging setting covers both halves.
log = logging.getLogger("koma.engine.cache")


def chunk_to_json(chunk: WireChunk) -> dict[str, Any]:
    # Server timings are left out: a replay's speed is measured when it is replayed.
    return {
        "content": chunk.content,
        "reasoning": chunk.reasoning,
        "tool_calls": [dataclasses.asdict(c) for c in chunk.tool_calls],
        "done": chunk.done,
        "finish_reason": chunk.finish_reason,
        "usage": dataclasses.asdict(chunk.usage) if chunk.usage is not None else None,
        "raw": chunk.raw,
    }


def chunk_from_json(item: dict[str, Any]) -> WireChunk:
    usage = item.get("usage")
    return WireChunk(
        content=str(item.get("content") or ""),
        reasoning=str(item.get("reasoning") or ""),
        tool_calls=[ToolCall(**c) for c in item.get("tool_calls") or []],
        done=bool(item.get("done")),
        finish_reason=item.get("finish_reason"),
        usage=Usage(**usage) if usage else None,
        raw=item.get("raw"),
    )


class SqliteStore:
    """Entries in one sqlite file; any database trouble turns persistence off, never crashes.

    Called from worker threads, so one lock keeps each statement and its commit together.
    Once closed (or broken) it stays off: a lookup still in flight must not reopen the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._off = False
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None and not self._off:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=2.0, check_same_thread=False)
                db.execute(
                    "CREATE TABLE IF NOT EXISTS responses "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, used INTEGER NOT NULL)"
                )
                db.commit()
                self._db = db
            except (sqlite3.Error, OSError) as err:
                self._fail(err)
        return self._db

    def _fail(self, err: Exception) -> None:
        log.warning("response cache at %s disabled: %s", self.path, err)
        self._close()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            db = self._conn()
            if db is None:
                return []
            try:
                rows = db.execute(sql, args).fetchall()
                db.commit()
            except sqlite3.Error as err:
                self._fail(err)
                return []
            return rows

    def get(self, key: str) -> str | None:
        rows = self._run("SELECT value FROM responses WHERE key = ?", (key,))
        if not rows:
            return None
        self._run(
            "UPDATE responses SET used = (SELECT COALESCE(MAX(used), 0) + 1 FROM responses) "
            "WHERE key = ?",
            (key,),
        )
        return str(rows[0][0])

    def put(self, key: str, value: str, max_entries: int) -> None:
        self._run(
            "INSERT OR REPLACE INTO responses (key, value, used) "
            "VALUES (?, ?, (SELECT COALESCE(MAX(used), 0) + 1 FROM responses))",
            (key, value),
        )
        self._run(
            "DELETE FROM responses WHERE key NOT IN "
            "(SELECT key FROM responses ORDER BY used DESC LIMIT ?)",
            (max(max_entries, 0),),
        )

    def delete(self, key: str) -> None:
        self._run("DELETE FROM responses WHERE key = ?", (key,))

    def count(self) -> int:
        rows = self._run("SELECT COUNT(*) FROM responses")
        return int(rows[0][0]) if rows else 0

    def clear(self) -> set[str]:
        keys = {str(row[0]) for row in self._run("SELECT key FROM responses")}
        self._run("DELETE FROM responses")
        return keys

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._off = True
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
