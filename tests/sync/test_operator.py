"""``sync retry`` / ``sync backfill`` run where the syncer may be delivered: in the host holding
its lease (asked through a request in the KV), or, with no host running it, in the asking
process under the lease. Each runtime imports its own copy of the recorder plugin, so a test
sees which process delivered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sectorhooks.config import HostConfig
from sectorhooks.errors import SyncError
from sectorhooks_spec import AllocatedSector
from support import wait_for
from sync.helpers import kv_rows, make_config, open_runtime, plugin_module, sid


def _config(tmp_path: Path) -> HostConfig:
    return make_config(tmp_path, syncers=[("a", "recorder", {"url": "a"})], kv="sqlkv")


def _recorder(rt: Any) -> Any:
    rec = plugin_module(rt, "recorder")
    rec.reset()
    return rec


def _dead_letter_sector_1(host: Any, rec: Any) -> None:
    rec.POISON["a"] = {str(sid(1))}
    for n in range(3):
        host.state.init_sectors([AllocatedSector(sid(n), 8)])
    wait_for(lambda: host.sync.records.count_dead("a") == 1, what="sector 1's init dead-lettered")
    assert host.sync.wait_idle(20)


def test_retry_from_another_process_is_run_by_the_host_holding_the_lease(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with open_runtime(config) as host:
        hrec = _recorder(host)
        _dead_letter_sector_1(host, hrec)
        hrec.POISON["a"] = set()  # fixed in the host
        with open_runtime(config, start_sync=False) as cli:  # what `sectorhooks sync retry a` opens
            crec = _recorder(cli)
            assert crec is not hrec
            assert cli.sync.retry_dead_letters("a", wait=20) == 1
            assert crec.DELIVERED == {}  # the asking process delivered nothing itself
            req = cli.sync.records.request("a")
            assert req is not None and (req["action"], req["state"], req["result"]) == ("retry", "done", 1)
        assert host.sync.records.count_dead("a") == 0
        assert hrec.read_rows("a") == kv_rows(host.state)


def test_backfill_from_another_process_is_run_by_the_host_holding_the_lease(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with open_runtime(config) as host:
        hrec = _recorder(host)
        host.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(5)])
        assert host.sync.wait_idle(20)
        hrec.ROWS.pop("a")  # the sink lost everything
        with open_runtime(config, start_sync=False) as cli:
            crec = _recorder(cli)
            assert cli.sync.backfill("a", wait=20) == 5
            assert crec.DELIVERED == {}
        assert hrec.read_rows("a") == kv_rows(host.state)


def test_a_request_that_fails_in_the_host_reports_the_hosts_error(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with open_runtime(config) as host:
        hrec = _recorder(host)
        host.state.init_sectors([AllocatedSector(sid(0), 8)])
        assert host.sync.wait_idle(20)
        hrec.DOWN["a"] = True  # the sink is down while the host backfills
        with open_runtime(config, start_sync=False) as cli:
            failed = r"backfill failed in the host holding it \(.+\): .*Connection"
            with pytest.raises(SyncError, match=failed):
                cli.sync.backfill("a", wait=20)
            req = cli.sync.records.request("a")
            assert req is not None and req["state"] == "failed"
        hrec.DOWN["a"] = False
        assert host.sync.wait_idle(20)


def test_with_no_host_running_it_the_command_takes_the_lease_and_delivers_itself(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with open_runtime(config) as host:
        _dead_letter_sector_1(host, _recorder(host))
        fence_before = host.sync.dispatcher("a").lease.fence  # type: ignore[union-attr]
    with open_runtime(config, start_sync=False) as cli:  # the host is gone: its lease was released
        crec = _recorder(cli)
        assert cli.sync.retry_dead_letters("a", wait=5) == 1
        assert [(kind, sector) for kind, sector, _ in crec.DELIVERED["a"]] == [("init", str(sid(1)))]
        assert cli.sync.records.request("a") is None  # nobody had to be asked
        lease = cli.sync.dispatcher("a").lease.state()  # type: ignore[union-attr]
        assert lease is not None and lease["holder"] == "" and lease["fence"] > fence_before  # released


def test_a_holder_that_does_not_answer_gets_the_request_withdrawn(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with open_runtime(config, start_sync=False) as old_host:  # holds the lease, serves no requests
        assert old_host.sync.dispatcher("a").lease.acquire()  # type: ignore[union-attr]
        with open_runtime(config, start_sync=False) as cli:
            with pytest.raises(
                SyncError,
                match=r"delivered by another host \(.+:\d+, fence \d+\), which did not take the retry "
                r"request within 0.3s; nothing was done",
            ):
                cli.sync.retry_dead_letters("a", wait=0.3)
            req = cli.sync.records.request("a")
            assert req is not None and req["state"] == "cancelled"
            assert [s["request"] for s in cli.sync.status()] == [None]  # a cancelled one is over
            rid = cli.sync.records.post_request("a", "backfill")
            with pytest.raises(SyncError, match=f"a backfill request \\({rid}\\) is still pending"):
                cli.sync.records.post_request("a", "retry")
            (s,) = cli.sync.status()  # what `sync status` shows meanwhile
            assert (s["request"]["id"], s["request"]["action"], s["request"]["state"]) == (
                rid,
                "backfill",
                "pending",
            )
            assert cli.sync.records.cancel_request("a", rid)
            assert cli.sync.status()[0]["request"] is None


def test_a_request_whose_host_lost_the_lease_no_longer_blocks_a_new_one(tmp_path: Path) -> None:
    """A host that took a request and died leaves it ``running``; once a new holder has the lease
    (its token is on the cursor at once), that request is abandoned: a new one can be posted,
    and the new holder runs it."""
    config = _config(tmp_path)
    with open_runtime(config, start_sync=False) as old_host:
        old = old_host.sync.dispatcher("a")
        assert old.lease is not None and old.lease.acquire()
        records = old_host.sync.records
        records.write_cursor("a", old.lease.fence, seq=0, state="running")  # it was delivering
        rid = records.post_request("a", "backfill")
        taken = records.take_request("a", old.lease.fence)
        assert taken is not None and taken["id"] == rid and taken["fence"] == old.lease.fence
        # ... and the host dies before finishing it: while its lease stands, the request blocks.
        with pytest.raises(SyncError, match=f"a backfill request \\({rid}\\) is still running"):
            records.post_request("a", "retry")
        old.lease.release()  # what its lease's expiry does
        with open_runtime(config) as new_host:
            d = new_host.sync.dispatcher("a")
            wait_for(lambda: d.holding, what="the new host holding the lease")
            wait_for(
                lambda: (records.cursor("a") or {}).get("fence") == d.lease.fence,  # type: ignore[union-attr]
                what="the new holder's token on the cursor",
            )
            assert new_host.sync.status()[0]["request"] is None  # the abandoned one is not shown
            with open_runtime(config, start_sync=False) as cli:
                assert cli.sync.retry_dead_letters("a", wait=20) == 0  # run by the new holder
                req = cli.sync.records.request("a")
                assert req is not None and req["id"] != rid and req["state"] == "done"
                assert req["fence"] == d.lease.fence  # type: ignore[union-attr]
