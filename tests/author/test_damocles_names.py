"""damocles-manager's argument names (#19 item 4): ``ws``, ``sid``, ``fieldvals`` and ``cfg`` are
accepted as aliases of ``workspace``, ``sector_id``, ``fields`` and ``config`` and receive those
values; ``ctx``, ``pluginsDir`` and ``manifest`` (damocles' ``OnInit(ctx, pluginsDir, manifest)``)
are refused with a problem naming what to use; an alias a hook does not pass is refused too."""

from __future__ import annotations

from pathlib import Path

from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost, PluginStatus
from sectorhooks.runtime import Runtime
from sectorhooks.testing.target import PluginUnderTest, sync_config
from sectorhooks_spec import LatestState, SectorID, StoreConfig, Workspace
from sectorhooks_spec.sector import AllocatedSector

SYNC_EXPORTS = """export = [
  { extPoint = "OnImport", impl = "on_import" },
  { extPoint = "OnInit", impl = "on_init" },
  { extPoint = "OnUpdate", impl = "on_update" },
  { extPoint = "OnFinalize", impl = "on_sid" },
  { extPoint = "OnRestore", impl = "on_sid" },
]
"""

PORTED_SYNCER = """
SEEN = []


def on_import(ws, state):
    SEEN.append(("import", ws, state.id))


def on_init(ws, states):
    SEEN.extend(("init", ws, s.id) for s in states)


def on_update(ws, sid, fieldvals, state):
    def later():  # sid captured by a closure: still the sector id
        return sid

    SEEN.append(("update", ws, later(), sorted(fieldvals), state.version))


def on_sid(sid):
    SEEN.append(("sid", sid))
"""


def write_plugin(root: Path, name: str, kind: str, exports: str, module: str, extra: str = "") -> Path:
    plugin = root / name
    plugin.mkdir(parents=True)
    (plugin / "manifest.toml").write_text(f'name = "{name}"\nkind = "{kind}"\n{extra}{exports}')
    (plugin / f"{name}.py").write_text(module)
    return plugin


def load(plugin: Path, tmp_path: Path) -> PluginHost:
    config = HostConfig(
        data_dir=tmp_path / "data", plugins=PluginsConfig(dirs=(plugin,), bundled=False, entry_points=False)
    )
    return PluginHost(config).load()


def test_ws_sid_and_fieldvals_receive_workspace_sector_id_and_fields(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path, "ported", "SyncSectorState", SYNC_EXPORTS, PORTED_SYNCER)
    with Runtime.open(
        sync_config(PluginUnderTest(plugin), tmp_path / "rt"),
        start_sync=False,
        filestores=False,
        registry=False,
    ) as rt:
        assert rt.host.records["ported"].status is PluginStatus.ACTIVE, rt.host.records["ported"].error
        rt.state.init_sectors([AllocatedSector(SectorID(1000, 1), 8)])
        rt.state.update(SectorID(1000, 1), latest_state=LatestState("S1"))
        rt.state.finalize(SectorID(1000, 1))
        d = rt.sync.dispatcher("contract")
        d.load_cursor()
        while d.step():
            pass
        seen = rt.host.records["ported"].bound.module.SEEN
    assert seen == [
        ("init", Workspace.ONLINE, SectorID(1000, 1)),
        ("update", Workspace.ONLINE, SectorID(1000, 1), ["latest_state"], 2),
        ("sid", SectorID(1000, 1)),
    ]


def test_cfg_is_the_filestore_constructors_config(tmp_path: Path) -> None:
    module = "def open_store(cfg):\n    raise RuntimeError(f'got {cfg.name} at {cfg.path}')\n"
    exports = 'export = [{ extPoint = "Constructor", impl = "open_store" }]\n'
    host = load(write_plugin(tmp_path, "portedfs", "FileStore", exports, module), tmp_path)
    host.start()
    record = host.records["portedfs"]
    assert record.status is PluginStatus.ACTIVE, record.error
    impl = host.impls("filestore_constructor")[0]
    assert impl.argnames == ("config",)
    try:
        impl(config=StoreConfig(name="s1", path="/srv/s1"))
    except RuntimeError as exc:
        assert str(exc) == "got s1 at /srv/s1"
    else:
        raise AssertionError("the constructor was not called with the config")
    host.shutdown()


def test_damocles_on_init_arguments_are_refused_naming_what_to_use(tmp_path: Path) -> None:
    module = "def OnInit(ctx, pluginsDir, manifest):\n    pass\n\n\ndef Open(meta):\n    pass\n"
    exports = 'export = [{ extPoint = "Constructor", impl = "Open" }]\n'
    host = load(
        write_plugin(tmp_path, "portedkv", "KVStore", exports, module, 'onInit = "OnInit"\n'), tmp_path
    )
    record = host.records["portedkv"]
    assert record.status is PluginStatus.INVALID
    text = "\n".join(str(p) for p in record.problems)
    assert "onInit" in text and "['ctx', 'pluginsDir', 'manifest']" in text, text
    assert "damocles' 'ctx': the host passes no context.Context: drop ctx" in text
    assert (
        "damocles' 'pluginsDir': drop pluginsDir: the plugin's own directory is os.path.dirname(__file__)"
        in text
    )
    assert "damocles' 'manifest': drop manifest: onInit's config holds the plugin's settings" in text
    assert "an impl may take any of: config, kvstore" in text


def test_an_alias_the_hook_does_not_pass_is_refused_naming_the_replacement(tmp_path: Path) -> None:
    module = PORTED_SYNCER.replace("def on_import(ws, state):", "def on_import(sid, state):").replace(
        '("import", ws, state.id)', '("import", sid)'
    )
    host = load(write_plugin(tmp_path, "portedbad", "SyncSectorState", SYNC_EXPORTS, module), tmp_path)
    record = host.records["portedbad"]
    assert record.status is PluginStatus.INVALID
    text = "\n".join(str(p) for p in record.problems)
    assert "['sid'] that hook sync_on_import does not pass" in text, text
    assert (
        "damocles' 'sid' is 'sector_id' here, which hook sync_on_import does not pass (use state.id)" in text
    )


def test_both_names_at_once_are_refused(tmp_path: Path) -> None:
    module = PORTED_SYNCER.replace("def on_sid(sid):", "def on_sid(sid, sector_id):")
    host = load(write_plugin(tmp_path, "portedtwice", "SyncSectorState", SYNC_EXPORTS, module), tmp_path)
    record = host.records["portedtwice"]
    assert record.status is PluginStatus.INVALID
    assert "['sid']" in "\n".join(str(p) for p in record.problems)
