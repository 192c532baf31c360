"""The registry CLI end to end on a real KV, and proof that no secret leaks into logs or output."""

from __future__ import annotations

import json
import logging
from typing import List, Tuple

import click
import pytest

from registry.regkit import opened, write_config
from sectorhooks.cli import run
from sectorhooks.cli.registry import parse_expire
from sectorhooks.registry import Registry, Status


@pytest.fixture
def config(tmp_path, kv_backend):
    plugin, meta = kv_backend
    return str(write_config(tmp_path, plugin, meta))


def cli(capsys, *args: str) -> Tuple[int, str, str]:
    code = run(["-vv", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_no_secret_appears_in_any_log_line_or_listing(config, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    code, out, err = cli(capsys, "registry", "register", "--config", config)
    assert code == 0, err
    secrets = dict(line.split(" ", 1) for line in out.splitlines())
    assert set(secrets) == {"greet", "rediskv"} or set(secrets) == {"greet", "sqlkv"}
    assert "shown once" in err
    code, rotated, err = cli(capsys, "registry", "rotate-secret", "greet", "--config", config)
    assert code == 0, err
    all_secrets: List[str] = [*secrets.values(), rotated.strip()]
    assert all(len(s) >= 40 for s in all_secrets)

    outputs = []
    stdouts = []
    for args in (
        ["registry", "list"],
        ["registry", "list", "--json"],
        ["registry", "show", "greet"],
        ["registry", "show", "greet", "--json"],
        ["registry", "routes"],
        ["registry", "routes", "--json"],
        ["registry", "register"],  # a refresh generates no secret and shows none
        ["plugins", "enable", "greet", "--tenant", "acme", "--name", "Acme Inc", "--expire", "+1d"],
        ["tenants", "list"],
        ["tenants", "list", "--json"],
        ["plugins", "disable", "greet", "--tenant", "acme"],
        ["plugins", "list", "--json"],
    ):
        code, out, err = cli(capsys, *args, "--config", config)
        assert code == 0, (args, err)
        outputs.append(out + err)
        stdouts.append(out)  # -vv: stderr carries log lines
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "registered plugin 'greet'" in logged and "rotated the secret of plugin 'greet'" in logged
    for secret in all_secrets:
        assert secret not in logged
        assert not [o for o in outputs if secret in o]
    shown = json.loads(stdouts[3])
    assert shown["secret"] == "set (hidden)" and shown["route"]["status"] == "WAIT_RUNNING"
    with opened(config, start_all=False) as (_, kv):
        stored = kv.view(lambda t: list(t.collection("private").scan()) + list(t.collection("public").scan()))
    for secret in all_secrets:
        assert not [k for k, v in stored if secret.encode() in v]


def test_tenant_enable_list_disable_and_plugin_disable_enable_move_the_route(config, capsys):
    assert cli(capsys, "registry", "register", "--config", config)[0] == 0
    code, out, _ = cli(
        capsys,
        "plugins",
        "enable",
        "greet",
        "--tenant",
        "acme",
        "--name",
        "Acme",
        "--expire",
        "2999-01-01",
        "--config",
        config,
    )
    assert code == 0 and "enabled for tenant acme (expires 2999-01-01T00:00:00Z)" in out
    code, out, _ = cli(capsys, "tenants", "list", "--json", "--config", config)
    listed = json.loads(out)
    assert listed["acme"][0]["plugin"] == "greet" and listed["acme"][0]["tenant_name"] == "Acme"
    assert listed["acme"][0]["expired"] is False

    code, out, _ = cli(capsys, "plugins", "disable", "greet", "--config", config)
    assert code == 0 and "route of greet is now STOPPED" in out
    with opened(config, start_all=False) as (_, kv):
        assert Registry(kv).route("greet").status is Status.STOPPED
    code, out, _ = cli(capsys, "plugins", "enable", "greet", "--config", config)
    assert code == 0 and "route of greet is now WAIT_RUNNING" in out

    code, out, _ = cli(capsys, "plugins", "disable", "greet", "--tenant", "acme", "--config", config)
    assert code == 0 and "disabled for tenant acme" in out
    code, out, _ = cli(capsys, "plugins", "disable", "greet", "--tenant", "acme", "--config", config)
    assert code == 0 and "was not enabled for tenant acme" in out
    with opened(config, start_all=False) as (_, kv):
        assert Registry(kv).get("greet").active_tenant == ()


def test_cli_errors_name_the_plugin_and_the_fix(config, capsys):
    code, _, err = cli(capsys, "registry", "show", "nope", "--config", config)
    assert code == 1 and "'nope' is not registered" in err
    code, _, err = cli(capsys, "plugins", "enable", "greet", "--tenant", "acme", "--config", config)
    assert code == 1 and "registry register" in err
    code, _, err = cli(
        capsys, "plugins", "enable", "greet", "--tenant", "acme", "--expire", "soon", "--config", config
    )
    assert code == 2 and "--expire" in err
    code, _, err = cli(capsys, "plugins", "enable", "greet", "--expire", "+1d", "--config", config)
    assert code == 2 and "go with --tenant" in err


def test_expire_accepts_dates_times_durations_and_never():
    now = 1_700_000_000
    assert parse_expire("never", now) == parse_expire("", now) == parse_expire(None, now) == 0
    assert parse_expire("+90s", now) == now + 90 and parse_expire("2h", now) == now + 7200
    assert parse_expire("7d", now) == now + 7 * 86400
    assert parse_expire("2025-12-31", now) == 1767139200
    assert parse_expire("2025-12-31T01:00:00+01:00", now) == 1767139200
    assert parse_expire("2025-12-31T00:00:00Z", now) == 1767139200
    with pytest.raises(click.BadParameter):
        parse_expire("next tuesday", now)
