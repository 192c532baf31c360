"""``sectorhooks store list``: the configured piece and persist stores with their capacity."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from rich.markup import escape
from rich.table import Table

from sectorhooks_spec.kinds import Kind

from ..errors import SectorhooksError
from ..host import PluginHost
from ..stores import open_filestores, store_roles
from . import main
from ._common import config_option, console, fail, get_config, json_option, print_json


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


def store_rows(config_path: Optional[str]) -> List[Dict[str, Any]]:
    """One dict per configured store: name, role, plugin, path, flags and capacity in bytes."""
    config = get_config(config_path)
    host = PluginHost(config).load()
    try:
        host.start(kinds=[Kind.FILE_STORE])
        stores = open_filestores(host, config)
        roles = store_roles(config)
        rows = []
        for name, fs in stores.items():
            cfg = fs.instance_config()
            info = fs.instance_info()
            rows.append(
                {
                    "name": name,
                    "role": roles.get(name, ""),
                    "plugin": cfg.plugin_name or "fsstore",
                    "path": cfg.path,
                    "type": info.type,
                    "read_only": cfg.read_only,
                    "strict": cfg.strict,
                    "weight": cfg.weight,
                    "allow_miners": list(cfg.allow_miners),
                    "deny_miners": list(cfg.deny_miners),
                    "total": info.total,
                    "free": info.free,
                    "used": info.used,
                    "used_percent": round(info.usage_percent, 2),
                }
            )
        return rows
    finally:
        host.shutdown()


@main.group("store")
def store_group() -> None:
    """Piece and persist stores (``[[Common.PieceStores]]``, ``[[Common.PersistStores]]``)."""


@store_group.command("list")
@config_option
@json_option
def store_list(config_path: Optional[str], as_json: bool) -> None:
    """Every configured store: plugin, path, read-only, total / free / used."""
    try:
        rows = store_rows(config_path)
    except SectorhooksError as exc:
        fail(str(exc))
        return
    if as_json:
        print_json({"stores": rows})
        return
    if not rows:
        console.print("no stores configured (add [[Common.PersistStores]] to the config)")
        return
    table = Table(title="stores")
    table.add_column("store / path", overflow="fold")
    for col in ("role", "plugin", "ro", "weight", "total", "free", "used"):
        table.add_column(col, justify="left" if col in ("role", "plugin", "ro") else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            f"[bold]{escape(r['name'])}[/]\n[dim]{escape(r['path'])}[/]",
            r["role"],
            escape(r["plugin"]),
            "yes" if r["read_only"] else "no",
            str(r["weight"]),
            _human(r["total"]),
            _human(r["free"]),
            f"{r['used_percent']:.0f}%",
        )
    console.print(table)
