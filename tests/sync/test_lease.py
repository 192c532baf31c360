"""Two host replicas on one KV: a lease (helper-7's protocol) decides who delivers a syncer;
a holder that lost it cannot move the cursor (fencing)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from sectorhooks.sync import SyncLeaseLost
from sectorhooks_spec import AllocatedSector, LatestState
from support import wait_for
from sync.helpers import make_config, open_runtime, plugin_module, sid


class Board:
    """A lease table shared by the replicas of this test: one holder per syncer, fenced."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: Dict[str, Optional[str]] = {}
        self.fence: Dict[str, int] = {}

    def factory(self, replica: str) -> Any:
        return lambda name: _Lease(self, replica, name)

    def revoke(self, name: str) -> None:
        """The holder's lease expired (it stalled): the next acquire wins."""
        with self.lock:
            self.holder[name] = None


class _Lease:
    def __init__(self, board: Board, replica: str, name: str):
        self.board, self.replica, self.name = board, replica, name
        self.fence = 0

    def acquire(self) -> bool:
        b = self.board
        with b.lock:
            if b.holder.get(self.name) not in (None, self.replica):
                return False
            if b.holder.get(self.name) is None:
                b.fence[self.name] = b.fence.get(self.name, 0) + 1
                b.holder[self.name] = self.replica
            self.fence = b.fence[self.name]
            return True

    def renew(self) -> bool:
        with self.board.lock:
            return (
                self.board.holder.get(self.name) == self.replica and self.board.fence[self.name] == self.fence
            )

    def release(self) -> None:
        with self.board.lock:
            if self.board.holder.get(self.name) == self.replica:
                self.board.holder[self.name] = None


def test_only_the_lease_holder_delivers_and_a_stale_holder_is_fenced(tmp_path: Path) -> None:
    board = Board()
    config = make_config(tmp_path, syncers=[("a", "recorder", {"url": "a"})], kv="sqlkv")
    with open_runtime(config, lease_factory=board.factory("r1")) as r1:
        rec = plugin_module(r1, "recorder")
        rec.reset()
        d1 = r1.sync.dispatcher("a")
        wait_for(lambda: board.holder.get("a") == "r1", what="r1 takes the lease")
        with open_runtime(config, lease_factory=board.factory("r2")) as r2:
            d2 = r2.sync.dispatcher("a")
            wait_for(lambda: d2.state == "standby", what="r2 waits")
            r1.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(5)])
            for n in range(5):
                r1.state.update(sid(n), latest_state=LatestState("one"))
            head = r1.state.log.head()
            wait_for(lambda: d1.cursor == head, what="r1 delivers")
            assert d2.state == "standby" and d2.cursor == 0

            board.revoke("a")  # r1 stalls past its lease; r2 takes over with a newer fence
            wait_for(lambda: board.holder.get("a") == "r2", what="r2 takes the lease")
            stale_fence = d1.lease.fence
            for n in range(5):
                r2.state.update(sid(n), latest_state=LatestState("two"))
            head = r2.state.log.head()
            wait_for(lambda: d2.cursor == head, what="r2 delivers from the saved cursor")
            wait_for(lambda: d1.state == "standby", what="r1 notices it lost the lease")
            with pytest.raises(SyncLeaseLost, match="lease lost"):
                r1.sync.records.write_cursor("a", stale_fence, seq=1)
            # Each host imports its own copy of the plugin module. r1's copy holds what r1 delivered:
            # everything up to v2, and possibly one batch it sent before noticing the revoked lease
            # (at-least-once: sinks are idempotent; the fenced cursor write above is what it cannot
            # do). r2's copy holds what r2 delivered after taking over from the saved cursor.
            stale = {k: v[0] for k, v in rec.read_rows("a").items()}
            assert set(stale) == {str(sid(n)) for n in range(5)} and set(stale.values()) <= {2, 3}
            rec2 = plugin_module(r2, "recorder")
            assert rec2 is not rec
            rows = rec2.read_rows("a")
            assert {k: v[0] for k, v in rows.items()} == {str(sid(n)): 3 for n in range(5)}
            assert rows == {str(s.id): (s.version, _json(s)) for s in r2.state.list()}


def _json(state: Any) -> str:
    from sectorhooks_spec import dumps

    return dumps(state)
