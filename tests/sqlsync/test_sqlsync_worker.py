"""sqlsync's worker process (``worker = "process"``, the default for a SQLite file): each flush is
written by a process of the instance's own; a worker that dies fails one flush and loses nothing."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlsynckit import Feeder, expected, state

from sectorhooks.host import PluginHost
from sectorhooks_spec import RejectedChanges


def _worker(f: Feeder) -> Any:
    return f.module._INSTANCES[f.syncer.name]._worker


def _ready(f: Feeder) -> Any:
    """The instance's worker, once it has started (until then flushes are written in this thread)."""
    worker = _worker(f)
    assert worker.wait_ready(60), "the worker did not start"
    return worker


def test_a_sqlite_file_sink_writes_in_a_worker_process_of_its_own(host: PluginHost, tmp_path: Path):
    with Feeder(host, f"sqlite:///{tmp_path / 'w.sqlite'}") as f:
        f.update(state(1, 1))
        f.update(state(2, 1))
        worker = _ready(f)
        f.flush()
        f.write(state(1, 2))
        assert f.module._INSTANCES[f.syncer.name]._sink is None  # nothing was written in this process
        pid = worker.pid
        assert pid is not None and pid != os.getpid()
        assert psutil.Process(pid).ppid() == os.getpid()
        # Below the host's priority: the state manager's callers get the CPU first.
        assert psutil.Process(pid).nice() == min(19, os.nice(0) + f.module.DEFAULT_NICE)
        assert f.rows() == expected([state(1, 2), state(2, 1)])
        assert set(f.events()) == {("s-t01000-1", 1), ("s-t01000-1", 2), ("s-t01000-2", 1)}
    assert worker.pid is None and not psutil.pid_exists(pid)  # closed with its instance, and reaped


def test_nice_0_keeps_the_worker_at_the_hosts_priority(host: PluginHost, tmp_path: Path):
    with Feeder(host, f"sqlite:///{tmp_path / 'n.sqlite'}", nice=0) as f:
        f.update(state(1, 1))
        worker = _ready(f)
        f.flush()
        assert psutil.Process(worker.pid).nice() == os.nice(0)
        assert f.rows() == expected([state(1, 1)])


def test_thread_mode_writes_in_the_host_process(host: PluginHost, tmp_path: Path):
    before = {p.pid for p in psutil.Process().children()}
    with Feeder(host, f"sqlite:///{tmp_path / 't.sqlite'}", worker="thread") as f:
        f.write(state(1, 1), state(2, 1))
        assert _worker(f) is None
        assert f.module.wait_ready(0)  # no worker to wait for
        assert {p.pid for p in psutil.Process().children()} == before
        assert f.rows() == expected([state(1, 1), state(2, 1)])


def test_a_killed_worker_fails_the_flush_and_the_redelivered_batch_is_written_by_a_new_one(
    host: PluginHost, tmp_path: Path
):
    with Feeder(host, f"sqlite:///{tmp_path / 'k.sqlite'}") as f:
        f.write(state(1, 1))
        old = _ready(f).pid
        os.kill(old, signal.SIGKILL)
        f.update(state(1, 2))
        f.update(state(2, 1))
        with pytest.raises(f.module.SinkUnavailable) as info:
            f.flush()
        text = str(info.value)
        assert f.syncer.name in text and "2 change(s) not written" in text, text
        assert "killed by signal 9" in text, text
        assert f.rows() == expected([state(1, 1)])  # nothing of the failed batch
        f.write(state(1, 2), state(2, 1))  # what the host does: deliver the batch again
        assert _worker(f).pid not in (None, old)
        assert f.rows() == expected([state(1, 2), state(2, 1)])


def test_refused_rows_and_the_sinks_warnings_come_back_from_the_worker(
    host: PluginHost, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with Feeder(host, url) as f:
        f.write(state(1, 1))
        _ready(f)
        f.query(
            "CREATE TRIGGER no_poison BEFORE UPDATE ON {p}sectors WHEN NEW.abort_reason = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned sector'); END"
        )
        caplog.set_level(logging.WARNING)
        f.update(state(1, 2, abort_reason="poison"))
        f.update(state(2, 1))
        with pytest.raises(RejectedChanges) as info:
            f.flush()
        assert [(r.sector, r.version) for r in info.value.rejected] == [("s-t01000-1", 2)]
        assert "poisoned sector" in info.value.rejected[0].reason
        assert f.rows() == expected([state(1, 1), state(2, 1)])
        logged = [r for r in caplog.records if "database refused s-t01000-1" in r.getMessage()]
        assert logged and logged[0].levelno == logging.WARNING  # logged by the worker, shown here


def test_a_worker_that_cannot_start_fails_flushes_until_it_can_and_loses_nothing(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    import importlib
    import sys

    python = sys.executable
    worker_module = importlib.import_module("sectorhooks_plugins.sqlsync.worker")
    monkeypatch.setattr(worker_module.sys, "executable", str(tmp_path / "no-python"))
    caplog.set_level(logging.WARNING)
    with Feeder(host, f"sqlite:///{tmp_path / 's.sqlite'}") as f:
        f.update(state(1, 1))  # the event is buffered: no error here (it would be dead-lettered)
        assert any("cannot start the worker process" in r.getMessage() for r in caplog.records)
        with pytest.raises(f.module.SinkUnavailable) as info:
            f.flush()
        assert "cannot start the worker process" in str(info.value) and "1 change(s)" in str(info.value)
        monkeypatch.setattr(worker_module.sys, "executable", python)
        f.write(state(1, 1))  # the host delivers the batch again
        assert f.rows() == expected([state(1, 1)])


def test_an_error_that_is_not_transient_names_the_instance_and_the_database(host: PluginHost, tmp_path: Path):
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not a SQLite database, whatever its name says" * 100)
    with Feeder(host, f"sqlite:///{path}") as f:
        f.update(state(1, 1))
        _ready(f)
        with pytest.raises(f.module.SinkFailed) as info:
            f.flush()
        text = str(info.value)
        assert f.syncer.name in text and str(path) in text and "(fatal)" in text, text
        assert "file is not a database" in text and "1 change(s) not written" in text, text
        assert _worker(f).pid is not None  # the worker itself is fine and stays


def test_a_worker_ignores_sigint_and_sigterm_sent_to_the_process_group(host: PluginHost, tmp_path: Path):
    # A Ctrl-C or a service manager signals every process of the group; the host then drains its
    # log through its workers, so they must still be there.
    with Feeder(host, f"sqlite:///{tmp_path / 'g.sqlite'}") as f:
        f.write(state(1, 1))
        pid = _ready(f).pid
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        f.write(state(1, 2), state(2, 1))
        assert _worker(f).pid == pid
        assert f.rows() == expected([state(1, 2), state(2, 1)])


def test_flushes_while_the_worker_starts_are_written_in_this_thread_then_the_worker_takes_over(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A worker's start (SQLAlchemy's import) may take seconds on a busy host; a flush must not wait
    # for it (its dispatcher would be late to renew its lease).
    import importlib

    worker_module = importlib.import_module("sectorhooks_plugins.sqlsync.worker")
    monkeypatch.setattr(worker_module, "_BOOT", "import time\ntime.sleep(3)\n" + worker_module._BOOT)
    with Feeder(host, f"sqlite:///{tmp_path / 'early.sqlite'}") as f:
        started = time.monotonic()
        f.write(state(1, 1), state(2, 1))
        assert time.monotonic() - started < 2.5  # it did not wait for the sleeping worker
        inst = f.module._INSTANCES[f.syncer.name]
        assert inst._sink is not None and not inst._worker._ready  # written here, not by the worker
        assert not f.module.wait_ready(0.2)  # still sleeping
        assert f.module.wait_ready(60) and inst._worker._ready and inst._worker.pid is not None
        f.write(state(1, 2))  # now through the worker
        assert f.rows() == expected([state(1, 2), state(2, 1)])
        assert set(f.events()) == {("s-t01000-1", 1), ("s-t01000-1", 2), ("s-t01000-2", 1)}
