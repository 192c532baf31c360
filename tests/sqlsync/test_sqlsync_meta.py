"""Meta keys are checked on an instance's first event; a bad one names the plugin, instance and key."""

from __future__ import annotations

import pytest

from sectorhooks.host import PluginHost
from sqlsync.sqlsynckit import Feeder, expected, state


@pytest.mark.parametrize(
    ("meta", "key", "says"),
    [
        ({"uri": "sqlite://"}, "uri", "did you mean 'url'?"),
        (
            {"flavour": 1},
            "flavour",
            "known keys: url, table_prefix, batch_size, events, retries",
        ),
        ({"url": ""}, "url", "must be a SQLAlchemy URL string"),
        ({"url": 5}, "url", "must be a SQLAlchemy URL string"),
        ({"table_prefix": "bad-name"}, "table_prefix", "letters, digits or '_'"),
        ({"batch_size": 0}, "batch_size", "positive integer, got 0"),
        ({"batch_size": "ten"}, "batch_size", "positive integer, got 'ten'"),
        ({"batch_size": True}, "batch_size", "positive integer, got True"),
        ({"events": "maybe"}, "events", "must be true or false, got 'maybe'"),
        ({"retries": -1}, "retries", "positive integer"),
        # sqlsync's own worker process gave way to the host's (Isolation): say so, not "unknown"
        ({"worker": "process"}, "worker", "was removed: the host runs every syncer in a worker process"),
        ({"nice": 10}, "nice", "was removed: the host runs every syncer in a worker process"),
    ],
)
def test_bad_meta_is_a_value_error_naming_instance_and_key(host: PluginHost, meta, key, says):
    f = Feeder(host, "sqlite://")
    f.syncer = f.syncer.__class__("mirror-1", "sqlsync", meta)
    with pytest.raises(ValueError) as info:
        f.update(state(1, 1))
    text = str(info.value)
    assert text.startswith(f"sqlsync instance 'mirror-1': meta key {key!r}"), text
    assert says in text


def test_string_meta_values_are_accepted_as_the_original_gives_them(host: PluginHost):
    module = host.records["sqlsync"].bound.module
    meta = {"url": "sqlite://", "batch_size": "250", "events": "off", "retries": "2"}
    got = module.settings_from_meta("x", meta)
    want = {"url": "sqlite://", "prefix": "", "batch_size": 250, "events": False, "retries": 2}
    assert got == want


def test_a_bad_instance_does_not_disturb_a_good_one(host: PluginHost, tmp_path):
    good = Feeder(host, f"sqlite:///{tmp_path / 'good.sqlite'}")
    bad = Feeder(host, "sqlite://", batch_size=-5)
    with pytest.raises(ValueError):
        bad.update(state(1, 1))
    good.write(state(1, 1))
    assert list(good.rows()) == ["s-t01000-1"]


def test_shutdown_disposes_instances_and_a_restarted_host_resumes(tmp_path):
    from sectorhooks.config import HostConfig, PluginsConfig

    url = f"sqlite:///{tmp_path / 'resume.sqlite'}"
    config = HostConfig(data_dir=tmp_path, plugins=PluginsConfig(entry_points=False))
    with PluginHost(config).load().start() as h1:
        f = Feeder(h1, url)
        f.write(state(1, 1))
        module = h1.records["sqlsync"].bound.module
        assert module._INSTANCES
    assert not module._INSTANCES  # onShutdown closed them
    with PluginHost(config).load().start() as h2:
        f2 = Feeder(h2, url)
        f2.write(state(1, 2), state(2, 1))
        assert f2.rows() == expected([state(1, 2), state(2, 1)])
