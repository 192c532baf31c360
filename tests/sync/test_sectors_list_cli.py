"""``sectorhooks sectors list`` (#20 item 2): paging from the command line (``--after``,
``--limit``, ``--all``, ``--json``) straight from the KV, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import pytest

from sectorhooks.cli import run
from sectorhooks.config import load_config
from sectorhooks.kv import kv_only
from sectorhooks.state import SectorStateManager
from sectorhooks_spec import AllocatedSector, SectorID

# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "host.toml"
    path.write_text(f'[Common]\nDataDir = "{tmp_path / "data"}"\n', encoding="utf-8")
    with kv_only(load_config(path)) as store:
        state = SectorStateManager(store)
        state.init_sectors([AllocatedSector(SectorID(m, n), 8) for m in (7, 1000) for n in range(1, 131)])
        state.finalize(SectorID(7, 2))
        state.close()
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sectors_list_pages_with_after_and_limit(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: List[str] = []
    after: List[str] = []
    pages = 0
    while True:
        code, out, err = cli(capsys, "sectors", "list", "--config", str(config), "--limit", "90", *after)
        assert code == 0, out + err
        lines = out.splitlines()
        assert lines[0].split() == ["sector", "workspace", "state", "version", "updated"]
        seen += [line.split()[0] for line in lines[1:] if line.startswith("s-t0")]
        pages += 1
        if lines[-1] == "last page":
            break
        assert lines[-1].startswith("next: ")
        after = ["--after", lines[-1].split(": ", 1)[1]]
    assert pages == 3
    assert seen == [f"s-t0{m}-{n}" for m in (7, 1000) for n in range(1, 131)]
    code, out, _ = cli(capsys, "sectors", "list", "--config", str(config), "--workspace", "offline")
    assert code == 0 and "s-t07-2" in out and "offline" in out and out.splitlines()[-1] == "last page"


def test_sectors_list_all_and_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "sectors", "list", "--config", str(config), "--all", "--limit", "7", "--miner", "7"
    )
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("s-t0")]
    assert [r[0] for r in rows] == [f"s-t07-{n}" for n in range(1, 131)]
    assert out.splitlines()[-1] == "130 sector(s); last page"
    code, out, _ = cli(
        capsys, "sectors", "list", "--config", str(config), "--json", "--limit", "3", "--miner", "1000"
    )
    page = json.loads(out)
    assert [s["id"]["number"] for s in page["sectors"]] == [1, 2, 3] and isinstance(page["next"], str)
    code, out, _ = cli(
        capsys,
        "sectors",
        "list",
        "--config",
        str(config),
        "--json",
        "--miner",
        "1000",
        "--after",
        page["next"],
        "--all",
    )
    rest = json.loads(out)
    assert [s["id"]["number"] for s in rest["sectors"]] == list(range(4, 131)) and rest["next"] is None
    code, out, _ = cli(capsys, "sectors", "list", "--config", str(config), "--json", "--miner", "5")
    assert code == 0 and json.loads(out) == {"sectors": [], "next": None}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--limit", "0"), "'limit' must be an integer from 1 to 1000"),
        (("--limit", "1001"), "'limit' must be an integer from 1 to 1000"),
        (("--after", "bogus"), "'after' is not a cursor"),
    ],
)
def test_sectors_list_refuses_a_bad_cursor_or_limit(
    config: Path, capsys: pytest.CaptureFixture[str], args: Tuple[str, ...], fragment: str
) -> None:
    code, out, err = cli(capsys, "sectors", "list", "--config", str(config), *args)
    assert code == 2 and fragment in err and out == ""


def test_sectors_list_refuses_a_cursor_of_other_filters(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "sectors", "list", "--config", str(config), "--json", "--limit", "2")
    cursor = json.loads(out)["next"]
    code, out, err = cli(
        capsys, "sectors", "list", "--config", str(config), "--miner", "7", "--after", cursor
    )
    assert code == 2 and "'after' is a cursor of workspace=None miner=None" in err
