"""The pytest plugin (entry point ``pytest11``): options, fixtures and the per-contract report.

``pytest --sectorhooks-plugin DIR [--sectorhooks-meta key=value ...]`` runs the suite of DIR's
kind (:data:`SUITES`) against it and ends with one line per contract. Without the option nothing
changes in a pytest run: two options are added, the fixtures below exist (every name starts with
``sectorhooks_``), and ``sectorhooks_target`` skips. A project runs a suite over its own
backends by importing the suite module's tests into a test module and overriding
``sectorhooks_target`` (see ``tests/kv/conftest.py`` in sectorhooks' sources).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest

if TYPE_CHECKING:
    from sectorhooks.host import PluginHost
    from sectorhooks.runtime import Runtime

    from .target import PluginUnderTest

#: Suite module per plugin kind (a module of this package).
SUITES: Dict[str, str] = {
    "KVStore": "kv_contracts",
    "FileStore": "filestore_contracts",
    "SyncSectorState": "sync_contracts",
}

# Plain asserts in the suites get pytest's detailed messages (only registers names: no import).
pytest.register_assert_rewrite(*(f"sectorhooks.testing.{m}" for m in SUITES.values()))

_SUITE_STEMS = frozenset(SUITES.values())
_OPTION = "sectorhooks_plugin"
_TARGET = pytest.StashKey["PluginUnderTest"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sectorhooks", "sectorhooks plugin conformance suites")
    group.addoption(
        "--sectorhooks-plugin",
        dest=_OPTION,
        default=None,
        metavar="DIR",
        help="run the conformance suite of this plugin's kind against the plugin directory DIR",
    )
    group.addoption(
        "--sectorhooks-meta",
        dest="sectorhooks_meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Meta key the suite opens the plugin with (repeat for more); {tmp} in VALUE is "
        "each test's own temp directory, e.g. path={tmp}/kv.sqlite3",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption(_OPTION)
    if path is None:
        return
    from .target import PluginUnderTest, TargetError, known_traits, parse_meta

    try:
        meta = parse_meta(config.getoption("sectorhooks_meta"))
        target = PluginUnderTest(Path(path).resolve(), meta, traits=known_traits(Path(path)))
        kind = target.manifest().kind.value
    except TargetError as exc:
        raise pytest.UsageError(f"--sectorhooks-plugin: {exc}") from None
    config.stash[_TARGET] = target
    config.pluginmanager.register(ContractReport(target), "sectorhooks-contracts")
    suite = str(Path(__file__).with_name(f"{SUITES[kind]}.py"))
    if config.args_source is pytest.Config.ArgsSource.ARGS:
        config.args.append(suite)
    else:  # no paths given: only the suite (not the project's testpaths)
        config.args[:] = [suite]


def _contract(nodeid: str) -> str:
    name = nodeid.rsplit("::", 1)[-1].split("[", 1)[0]
    return name[len("test_") :] if name.startswith("test_") else name


class ContractReport:
    """Registered only with ``--sectorhooks-plugin``: each contract's outcome, then a summary."""

    def __init__(self, target: PluginUnderTest):
        self.target = target
        self.results: Dict[str, str] = {}
        self.skip_reasons: Dict[str, str] = {}  # contract -> why it was not checked
        self.suite_items: Set[str] = set()

    def pytest_collection_modifyitems(self, items: List[pytest.Item]) -> None:
        here = Path(__file__).parent
        self.suite_items = {i.nodeid for i in items if i.path.parent == here and i.path.stem in _SUITE_STEMS}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.suite_items or (report.when != "call" and report.passed):
            return
        outcome = "FAIL" if report.failed else "SKIP" if report.skipped else "PASS"
        name = _contract(report.nodeid)
        rank = {"PASS": 0, "SKIP": 1, "FAIL": 2}
        if rank[outcome] >= rank[self.results.get(name, "PASS")]:  # any failing case fails it
            self.results[name] = outcome
        if report.skipped and isinstance(report.longrepr, tuple):  # (path, line, "Skipped: why")
            self.skip_reasons[name] = str(report.longrepr[2]).removeprefix("Skipped: ")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        manifest = self.target.manifest()
        tr.section(f"sectorhooks contracts: {manifest.kind.value} plugin {manifest.name!r}")
        tr.write_line(f"plugin: {self.target.path}  meta: {dict(self.target.meta) or '{}'}")
        for name, outcome in self.results.items():
            why = f"  ({self.skip_reasons[name]})" if outcome == "SKIP" and name in self.skip_reasons else ""
            tr.write_line(f"{outcome:4}  {name}{why}", red=outcome == "FAIL", green=outcome == "PASS")
        counts = {o: sum(1 for v in self.results.values() if v == o) for o in ("PASS", "FAIL", "SKIP")}
        tr.write_line(
            f"{counts['PASS']} contract(s) kept, {counts['FAIL']} broken, {counts['SKIP']} not checked"
        )


# --- fixtures (every name starts with sectorhooks_) --------------------------------------------------


@pytest.fixture
def sectorhooks_target(request: pytest.FixtureRequest) -> PluginUnderTest:
    """The plugin under test: from ``--sectorhooks-plugin``; a project overrides this fixture
    (e.g. parametrized over its bundled backends) to run a suite over its own plugins."""
    config = request.config
    if _TARGET not in config.stash:
        pytest.skip("no plugin under test: give --sectorhooks-plugin DIR")
    return config.stash[_TARGET]


class SectorhooksHosts:
    """Started hosts, one per (plugin directory, kind), shut down at the end of the session."""

    def __init__(self, data_dir: Path):
        self._data_dir = data_dir
        self._stack = contextlib.ExitStack()
        self._hosts: Dict[Tuple[Path, str], PluginHost] = {}

    def get(self, target: PluginUnderTest, kind: str) -> PluginHost:
        from sectorhooks_spec.kinds import Kind

        from .target import TargetError, started_host

        key = (target.path, kind)
        if key not in self._hosts:
            try:
                self._hosts[key] = self._stack.enter_context(started_host(target, self._data_dir, Kind(kind)))
            except TargetError as exc:
                pytest.fail(str(exc), pytrace=False)
        return self._hosts[key]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def sectorhooks_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SectorhooksHosts]:
    """The hosts the suites load plugins through (each plugin loaded once per session)."""
    hosts = SectorhooksHosts(tmp_path_factory.mktemp("sectorhooks-data"))
    try:
        yield hosts
    finally:
        hosts.close()


@pytest.fixture
def sectorhooks_kv_store(
    sectorhooks_target: PluginUnderTest, sectorhooks_hosts: SectorhooksHosts, tmp_path: Path
) -> Iterator[Any]:
    """An open store of the KVStore plugin under test (``Constructor(meta)``), closed afterwards."""
    from .target import open_kv

    host = sectorhooks_hosts.get(sectorhooks_target, "KVStore")
    store = open_kv(host, sectorhooks_target.for_test(tmp_path))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def sectorhooks_make_filestore(
    sectorhooks_target: PluginUnderTest, sectorhooks_hosts: SectorhooksHosts, tmp_path: Path
) -> Callable[..., Any]:
    """``make(name="s", path=None, **StoreConfig fields)``: a store of the FileStore plugin under
    test (root ``tmp_path/name`` unless ``path`` is given)."""
    from .target import open_filestore

    host = sectorhooks_hosts.get(sectorhooks_target, "FileStore")
    target = sectorhooks_target.for_test(tmp_path)

    def make(name: str = "s", path: Optional[Path] = None, **fields: Any) -> Any:
        return open_filestore(host, target, name, path if path is not None else tmp_path / name, **fields)

    return make


@pytest.fixture
def sectorhooks_runtime(sectorhooks_target: PluginUnderTest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime (memdb KV) with one syncer instance of the SyncSectorState plugin under test,
    its dispatcher not started: a delivery test steps it."""
    from sectorhooks.runtime import Runtime

    from .target import TargetError, sync_config

    try:
        config = sync_config(sectorhooks_target.for_test(tmp_path), tmp_path / "data")
    except TargetError as exc:
        pytest.fail(str(exc), pytrace=False)
    with Runtime.open(config, start_sync=False, filestores=False, registry=False) as rt:
        yield rt
