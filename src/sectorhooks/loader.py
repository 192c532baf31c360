"""Discover plugins, read their manifests, import their modules and bind impls to hooks.

Sources, in load order: the bundled ``contrib_plugins/``, each ``[Common.Plugins] Dir`` (plugin
directories and ``*.zip`` bundles, sorted by name), then installed distributions under the
entry-point group ``sectorhooks.plugins``. A plugin's files are imported as the synthetic package
``sectorhooks_plugins.<name>`` (see :func:`package_name`), so two plugins may both have a
``utils.py`` and relative imports work, from a directory or from a zip alike.

Plugins are other people's code, so what the loader reads is checked before it is trusted: a zip
bundle with any malformed entry is refused as one problem naming the zip and the entry, and
:func:`writable_by_others` finds plugin files other users could change (the host warns, or
refuses the plugin under ``[Common.Plugins] Strict``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import re
import stat
import sys
import traceback
import types
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import attrs

from sectorhooks_spec.kinds import KIND_HOOKS
from sectorhooks_spec.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    Problem,
    check_manifest,
    load_toml,
)
from sectorhooks_spec.markers import PROJECT_NAME

from .errors import PluginLoadError, UnsupportedHookImplError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sectorhooks.plugins"
PACKAGE_ROOT = "sectorhooks_plugins"
_IMPL_ATTR = f"{PROJECT_NAME}_impl"
_MISSING = object()
#: ``@hookimpl`` options whose semantics need pluggy's call chain, which the host does not use
#: (it calls each plugin on its own): refused at load, see :class:`UnsupportedHookImplError`.
_UNSUPPORTED_OPTIONS = ("wrapper", "hookwrapper")
_SEPARATORS_RE = re.compile(r"[-_.]+")
_PLAIN_NORMALIZED_RE = re.compile(r"[a-z][a-z0-9-]*")
#: A drive ("C:") or a name shaped like one ("0:"): refused on every OS (a bundle reads the same anywhere).
_DRIVE_RE = re.compile(r".:", re.DOTALL)
_REBUILD_HINT = "rebuild it with `sectorhooks plugin build`"
#: Files whose contents Python runs: the permission check looks at these (and every directory).
_CODE_SUFFIXES = (".py", ".pyc", ".so")


def bundled_plugins_dir() -> Path:
    """Where the bundled plugins are: inside the wheel, or the source tree's ``contrib_plugins``."""
    here = Path(__file__).resolve().parent
    packaged = here / "contrib_plugins"
    return packaged if packaged.is_dir() else here.parent.parent / "contrib_plugins"


@attrs.frozen
class Candidate:
    """A plugin found somewhere, not yet imported."""

    manifest_path: str  # for messages: a file path, or "bundle.zip/manifest.toml"
    manifest_text: str
    origin: str  # bundled | dir | zip | entry-point
    import_path: str  # directory or "zip/inner" path holding the plugin's modules
    package: Optional[str] = None  # installed package (entry points): imported by its real name
    bundle: Optional[str] = None  # the zip file, for zip bundles

    @property
    def source(self) -> str:
        """Where it came from, for logs and ``plugins list``."""
        return f"{self.origin}:{self.import_path if self.package is None else self.package}"


@attrs.define(slots=False, eq=False)  # identity: pluggy looks plugins up by `in`
class BoundPlugin:
    """A plugin ready for pluggy: its manifest, module and ``hook -> function`` bindings.

    The impls are also set as instance attributes named after their hooks: that is how pluggy
    finds hooks on a registered object.
    """

    manifest: Manifest
    candidate: Candidate
    module: types.ModuleType
    impls: Dict[str, Callable[..., Any]]
    impl_opts: Dict[str, Dict[str, Any]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.__dict__.update(self.impls)


# --- discovery -------------------------------------------------------------------------


def _dir_candidate(plugin_dir: Path, origin: str) -> Candidate:
    mpath = plugin_dir / MANIFEST_FILE
    return Candidate(str(mpath), mpath.read_text(encoding="utf-8"), origin, str(plugin_dir))


def _bad_member_name(name: str) -> Optional[str]:
    """Why a zip entry name is unsafe or invalid, or ``None`` when it is a plain relative path."""
    if not name:
        return "empty name"
    if name.startswith("/") or _DRIVE_RE.match(name):
        return "absolute path"
    if "\\" in name:
        return "backslash in the name (zip entries use '/')"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "control character in the name"
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if ".." in parts:
        return "'..' component"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    return None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes; reading to the end makes zipfile check its CRC."""
    with zf.open(info) as fh:
        return fh.read()


def _bundle_error(bundle: Path, field: str, message: str, hint: str = _REBUILD_HINT) -> ManifestError:
    return ManifestError(str(bundle), [Problem(str(bundle), field, message, hint)])


def _check_members(bundle: Path, zf: zipfile.ZipFile) -> Dict[str, bytes]:
    """Every entry's bytes by name, or one :class:`ManifestError` naming the first bad entry."""
    bad: List[Tuple[str, str]] = []
    seen: Dict[str, str] = {}
    data: Dict[str, bytes] = {}
    for info in zf.infolist():
        name = info.filename
        why = _bad_member_name(name)
        key = name.rstrip("/")
        if why is None and key in seen:
            why = f"duplicate entry (also {seen[key]!r})"
        if why is None and not info.is_dir():
            try:
                data[name] = _read_member(zf, info)
            # An untrusted archive can fail inside zipfile in many ways (bad CRC, zlib.error,
            # encryption, unknown compression, truncated headers): each means "corrupt entry".
            except Exception as exc:
                why = f"unreadable entry: {type(exc).__name__}: {exc}"
        seen.setdefault(key, name)
        if why is not None:
            bad.append((name, why))
    if bad:
        name, why = bad[0]
        more = ""
        if len(bad) > 1:
            others = ", ".join(repr(n) for n, _ in bad[1:6]) + (", ..." if len(bad) > 6 else "")
            more = f" (and {len(bad) - 1} more malformed: {others})"
        raise _bundle_error(bundle, f"entry {name!r}", f"malformed zip entry: {why}{more}")
    return data


def zip_candidate(bundle: Path) -> Candidate:
    """A plugin bundle: ``manifest.toml`` at the zip root or in its single top directory.

    Every entry is checked first (no absolute, ``..``, backslash, empty or duplicate names; every
    member readable): anything wrong is one :class:`ManifestError` naming the zip and the entry.
    """
    try:
        with zipfile.ZipFile(bundle) as zf:
            data = _check_members(bundle, zf)
    except ManifestError:
        raise
    except OSError as exc:
        raise _bundle_error(bundle, "<file>", f"cannot read plugin: {exc.strerror or exc}", "") from None
    except Exception as exc:  # not a zip, or a broken central directory: zipfile raises many kinds
        raise _bundle_error(bundle, "<file>", f"cannot read plugin: not a valid zip ({exc})") from None
    if MANIFEST_FILE in data:
        inner = ""
    else:
        tops = sorted(
            {n.split("/", 1)[0] for n in data if n.endswith("/" + MANIFEST_FILE) and n.count("/") == 1}
        )
        if len(tops) != 1:
            found = f"found {len(tops)} top directories holding one" if tops else "none found"
            raise _bundle_error(
                bundle,
                "<bundle>",
                f"no manifest.toml at the root of the zip or in its single top directory ({found})",
                "build it with `sectorhooks plugin build`",
            )
        inner = tops[0]
    member = f"{inner}/{MANIFEST_FILE}" if inner else MANIFEST_FILE
    try:
        text = data[member].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bundle_error(
            bundle, f"entry {member!r}", f"manifest is not UTF-8 text ({exc})", "save it as UTF-8"
        ) from None
    import_path = f"{bundle}/{inner}" if inner else str(bundle)
    return Candidate(f"{bundle}/{member}", text, "zip", import_path, bundle=str(bundle))


def scan_dir(
    root: Path, origin: str = "dir"
) -> Iterator[Tuple[Optional[Candidate], Optional[ManifestError]]]:
    """Plugins under ``root``: itself if it holds a manifest, else its sub-directories and zips."""
    if (root / MANIFEST_FILE).is_file():
        try:
            found: Tuple[Optional[Candidate], Optional[ManifestError]] = (_dir_candidate(root, origin), None)
        except (OSError, UnicodeDecodeError) as exc:
            found = (None, _unreadable(root / MANIFEST_FILE, exc))
        yield found
        return
    if not root.is_dir():
        yield (
            None,
            ManifestError(
                str(root),
                [
                    Problem(
                        str(root),
                        "Common.Plugins.Dir",
                        "plugin directory does not exist",
                        "create it or fix the path",
                    )
                ],
            ),
        )
        return
    for entry in sorted(root.iterdir()):
        try:
            if entry.is_dir() and (entry / MANIFEST_FILE).is_file():
                found = (_dir_candidate(entry, origin), None)
            elif entry.is_file() and entry.suffix == ".zip":
                found = (zip_candidate(entry), None)
            else:
                continue
        except ManifestError as exc:
            found = (None, exc)
        except (OSError, UnicodeDecodeError) as exc:
            found = (None, _unreadable(entry, exc))
        yield found  # outside the try: an error thrown into the generator is not a plugin's


def _unreadable(path: Path, exc: Exception) -> ManifestError:
    return ManifestError(str(path), [Problem(str(path), "<file>", f"cannot read plugin: {exc}")])


def _entry_points() -> List[Any]:
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # type: ignore[attr-defined, unused-ignore]  # Python 3.9


def scan_entry_points() -> Iterator[Tuple[Optional[Candidate], Optional[ManifestError]]]:
    """Installed distributions naming a plugin package under ``sectorhooks.plugins``."""
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        label = f"entry point {ep.name} = {ep.value}" + (f" ({dist.name} {dist.version})" if dist else "")
        package = ep.value.split(":", 1)[0].strip()
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError) as exc:
            spec = None
            err: Any = exc
        else:
            err = "package not found"
        locations = list(spec.submodule_search_locations or []) if spec else []
        mpaths = [Path(loc) / MANIFEST_FILE for loc in locations if (Path(loc) / MANIFEST_FILE).is_file()]
        if not mpaths:
            yield (
                None,
                ManifestError(
                    label,
                    [
                        Problem(
                            label,
                            "<entry point>",
                            f"no manifest.toml in package {package!r} ({err})",
                            "ship manifest.toml as package data",
                        )
                    ],
                ),
            )
            continue
        mpath = mpaths[0]
        try:
            text = mpath.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            yield None, _unreadable(mpath, exc)
            continue
        yield Candidate(str(mpath), text, "entry-point", str(mpath.parent), package), None


# --- binding ---------------------------------------------------------------------------


def read_manifest(candidate: Candidate) -> Tuple[Optional[Manifest], List[Problem]]:
    """Parse and statically validate a candidate's manifest; every problem is returned."""
    data, problems = load_toml(candidate.manifest_text, candidate.manifest_path)
    if data is None:
        return None, problems
    return check_manifest(data, candidate.manifest_path)


def normalize_name(name: str) -> str:
    """A plugin name as compared for uniqueness: case and runs of ``-``, ``_``, ``.`` are one (PEP 503)."""
    return _SEPARATORS_RE.sub("-", name).lower()


def package_name(name: str) -> str:
    """The synthetic package plugin ``name`` is imported as: one per normalised name, never shared.

    A usual name (``dup-x``, ``Dup_X``) gives ``sectorhooks_plugins.dup_x``; any other (the host
    still imports plugins whose manifest has problems, to report them all) is spelled in hex
    behind a ``_``, which no usual name starts with, so distinct normalised names never collide.
    """
    norm = normalize_name(name)
    if _PLAIN_NORMALIZED_RE.fullmatch(norm):
        return f"{PACKAGE_ROOT}.{norm.replace('-', '_')}"
    return f"{PACKAGE_ROOT}._{norm.encode('utf-8', 'surrogatepass').hex()}"


def _plugin_package(candidate: Candidate, manifest: Manifest) -> str:
    """Create (once) the synthetic package the plugin's files are imported under."""
    if PACKAGE_ROOT not in sys.modules:
        root = types.ModuleType(PACKAGE_ROOT, "synthetic parent of every loaded plugin")
        root.__path__ = []
        sys.modules[PACKAGE_ROOT] = root
    pkg_name = package_name(manifest.name)
    pkg = types.ModuleType(pkg_name, f"plugin {manifest.name!r} from {candidate.source}")
    pkg.__path__ = [candidate.import_path]
    pkg.__file__ = None
    pkg.__package__ = pkg_name
    # A reload replaces any earlier plugin of that name and its submodules (scanning sys.modules
    # only then: doing it for every first load made loading many plugins quadratic).
    if pkg_name in sys.modules:
        for mod in [m for m in sys.modules if m == pkg_name or m.startswith(pkg_name + ".")]:
            del sys.modules[mod]
    sys.modules[pkg_name] = pkg
    return pkg_name


def writable_by_others(candidate: Candidate) -> List[Tuple[str, int]]:
    """``(path, mode)`` of each plugin file or directory that group or others may write.

    For a zip bundle that is the zip file; otherwise the plugin's directory (an entry point's
    package directory) and its sub-directories, its manifest and its code files (.py, .pyc, .so).
    Hidden directories are skipped: nothing is imported from them. Mode bits only, as ssh does:
    ``access()`` says nothing when the host runs as root.
    """
    if candidate.bundle is not None:
        paths = [candidate.bundle]
    else:
        root = candidate.import_path
        paths = [candidate.manifest_path]
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            paths.append(dirpath)
            paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(_CODE_SUFFIXES))
    found: List[Tuple[str, int]] = []
    for path in dict.fromkeys(paths):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue  # a dangling symlink: the import reports it if it matters
        if mode & 0o022:
            found.append((path, mode))
    return found


def import_plugin_module(candidate: Candidate, manifest: Manifest) -> types.ModuleType:
    """Import the manifest's module; any exception becomes a :class:`PluginLoadError`."""
    if candidate.package is not None:
        full = f"{candidate.package}.{manifest.module}"
        try:
            found = importlib.util.find_spec(full)
        except ImportError:
            found = None
        target = full if found is not None else candidate.package
    else:
        target = f"{_plugin_package(candidate, manifest)}.{manifest.module}"
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name == target or (exc.name and target.endswith("." + exc.name)):
            raise PluginLoadError(
                manifest.name,
                candidate.manifest_path,
                f"module {manifest.module!r} not found in {candidate.import_path}",
                None,
            ) from None
        raise PluginLoadError(
            manifest.name, candidate.manifest_path, _describe(exc, candidate.import_path)
        ) from exc
    except BaseException as exc:  # a plugin's import may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginLoadError(
            manifest.name, candidate.manifest_path, _describe(exc, candidate.import_path)
        ) from exc


def _inside(filename: str, plugin_dir: str) -> bool:
    root = plugin_dir.rstrip("/\\")
    return filename == root or filename.startswith((root + os.sep, root + "/"))


def _describe(exc: BaseException, plugin_dir: str) -> str:
    """What a plugin's import raised and where: a syntax error's own file, line and column (the
    traceback ends inside importlib), else the deepest frame in the plugin's own files (the line
    of the plugin that led to the error, even when it was raised in a library), else the last."""
    name = type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}" + (f":{exc.offset}" if exc.offset else "")
        text = (exc.text or "").strip()
        return f"import raised {name}: {exc.msg} at {where}" + (f": {text}" if text else "")
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if _inside(f.filename, plugin_dir)]
    frame = own[-1] if own else frames[-1] if frames else None
    where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
    return f"import raised {name}: {exc}{where}"


def argnames(fn: Callable[..., Any]) -> Tuple[str, ...]:
    """Names of the arguments ``fn`` requires (no defaults, no ``*args``/``**kwargs``)."""
    if inspect.isfunction(fn) and not hasattr(fn, "__wrapped__"):
        # plain function: read its code object (inspect.signature is ~10x slower at load)
        code = fn.__code__
        positional = code.co_varnames[: code.co_argcount]
        positional = positional[: len(positional) - len(fn.__defaults__ or ())]
        kwonly = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
        kwdefaults = fn.__kwdefaults__ or {}
        return positional + tuple(k for k in kwonly if k not in kwdefaults)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return ()
    return tuple(
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY, p.KEYWORD_ONLY) and p.default is p.empty
    )


def bind(
    candidate: Candidate,
    manifest: Manifest,
    module: types.ModuleType,
    spec_args: Mapping[str, Sequence[str]],
) -> BoundPlugin:
    """Bind every manifest function (and ``@hookimpl`` functions of the module) to its hook.

    Raises :class:`ManifestError` with every problem: a missing or non-callable impl, an
    argument the hookspec does not have, a decorated function for a hook of another kind.
    """
    problems: List[Problem] = []
    path = candidate.manifest_path
    impls: Dict[str, Callable[..., Any]] = {}
    opts: Dict[str, Dict[str, Any]] = {}
    fields = {e.hook: f"export[{e.index}].impl" for e in manifest.exports}
    fields.update({"plugin_init": "onInit", "plugin_shutdown": "onShutdown"})
    for hook, fname in manifest.bindings().items():
        field = fields[hook]
        fn = getattr(module, fname, _MISSING)
        if fn is _MISSING:
            available = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            problems.append(
                Problem(
                    path,
                    field,
                    f"function {fname!r} not found in module {module.__name__.split('.')[-1]!r}",
                    f"define it, or name one of: {', '.join(available) or 'no functions found'}",
                )
            )
            continue
        if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
            what = "callable" if callable(fn) else "not callable"
            problems.append(
                Problem(
                    path,
                    field,
                    f"{fname!r} is a {type(fn).__name__} ({what}), not a function",
                    "point it at a function defined with def (wrap other callables in one)",
                )
            )
            continue
        impls[hook] = fn
    by_function: Dict[int, List[str]] = {}
    for hook, fn in impls.items():
        by_function.setdefault(id(fn), []).append(hook)
    for attr, value in vars(module).items():
        marker = getattr(value, _IMPL_ATTR, None) if callable(value) else None
        if not isinstance(marker, dict):
            continue
        named = by_function.get(id(value))
        if named and not marker.get("specname"):
            # a manifest impl decorated only for its options (tryfirst, ...)
            for hook in named:
                opts[hook] = dict(marker)
            continue
        hook = marker.get("specname") or attr
        if hook not in KIND_HOOKS[manifest.kind]:
            problems.append(
                Problem(
                    path,
                    "<module>",
                    f"@hookimpl {attr!r} implements {hook!r}, not a hook of kind {manifest.kind.value}",
                )
            )
            continue
        bound = impls.setdefault(hook, value)
        if bound is not value:  # the manifest (or an earlier decorated function) has this hook
            log.warning(
                "%s: @hookimpl %r of plugin %r is not used: %s is bound to %r already "
                "(remove the decorator, or point the manifest at %r)",
                path,
                attr,
                manifest.name,
                hook,
                getattr(bound, "__name__", bound),
                attr,
            )
            continue  # its options are its own: they never apply to the function that is bound
        opts[hook] = dict(marker)
    renamed: Dict[str, Dict[str, str]] = {}
    for hook, fn in impls.items():
        allowed = spec_args.get(hook, ())
        names = argnames(fn)
        aliases = {
            a: DAMOCLES_ALIASES[a]
            for a in names
            if a not in allowed and DAMOCLES_ALIASES.get(a) in allowed and DAMOCLES_ALIASES[a] not in names
        }
        extra = [a for a in names if a not in allowed and a not in aliases]
        if extra:
            hint = f"an impl may take any of: {', '.join(allowed) or 'no arguments'}"
            ported = [
                _damocles_hint(a, hook) for a in extra if a in DAMOCLES_ALIASES or a in DAMOCLES_REFUSED
            ]
            problems.append(
                Problem(
                    path,
                    fields.get(hook, "<module>"),
                    f"{getattr(fn, '__name__', fn)!r} takes argument(s) {extra} "
                    f"that hook {hook} does not pass",
                    "; ".join([*ported, hint]),
                )
            )
        elif aliases:
            renamed[hook] = aliases
    refused = [
        UnsupportedHookImplError(
            manifest.name,
            path,
            getattr(impls[hook], "__name__", "?"),
            hook,
            option,
            fields.get(hook, "<module>"),
        )
        for hook, marker in opts.items()
        for option in _UNSUPPORTED_OPTIONS
        if marker.get(option)
    ]
    if problems:
        problems.extend(
            Problem(path, e.field, f"function {e.function!r}: {e.reason}", e.fix) for e in refused
        )
        raise ManifestError(path, problems, plugin=manifest.name)
    if refused:
        raise refused[0]
    for hook, aliases in renamed.items():
        impls[hook] = with_argument_names(impls[hook], aliases)
        log.debug("%s: %s takes damocles' argument names %s", path, hook, aliases)
    return BoundPlugin(manifest, candidate, module, impls, opts)


# --- damocles-manager argument names --------------------------------------------------------

#: damocles-manager's argument names that have a clean counterpart here: an impl may use them
#: and is called as if it had used ours (README, "Porting a damocles-manager plugin").
DAMOCLES_ALIASES: Mapping[str, str] = {
    "ws": "workspace",  # SyncSectorState: the sector's workspace (online/offline)
    "sid": "sector_id",  # SyncSectorState: abi.SectorID
    "fieldvals": "fields",  # OnUpdate: the changed fields (here a name -> value mapping)
    "cfg": "config",  # FileStore Constructor(cfg filestore.Config)
}

#: damocles-manager's argument names with no counterpart: refused, saying what to use instead.
DAMOCLES_REFUSED: Mapping[str, str] = {
    "ctx": "the host passes no context.Context: drop ctx (a stop is onShutdown; a sync hook's time "
    "limit is [Common.Sync] HookTimeout)",
    "pluginsDir": "drop pluginsDir: the plugin's own directory is os.path.dirname(__file__) and its "
    "settings arrive as onInit's config ([Common.Plugins.Config.<name>])",
    "manifest": "drop manifest: onInit's config holds the plugin's settings; its name and version "
    "are in manifest.toml",
}


def _damocles_hint(name: str, hook: str) -> str:
    if name in DAMOCLES_REFUSED:
        return f"damocles' {name!r}: {DAMOCLES_REFUSED[name]}"
    ours = DAMOCLES_ALIASES[name]
    instead = " (use state.id)" if ours == "sector_id" else ""
    return f"damocles' {name!r} is {ours!r} here, which hook {hook} does not pass{instead}"


def with_argument_names(fn: Callable[..., Any], renames: Mapping[str, str]) -> Callable[..., Any]:
    """A copy of ``fn`` whose parameters named in ``renames`` carry the new names (``ws`` ->
    ``workspace``): the host and pluggy read an impl's argument names from its code object, and
    call it positionally in that order. The body is the same code (locals are found by position,
    not name); nothing is generated or compiled."""
    code = fn.__code__
    nparams = code.co_argcount + code.co_kwonlyargcount
    varnames = tuple(renames.get(n, n) if i < nparams else n for i, n in enumerate(code.co_varnames))
    cellvars = tuple(renames.get(n, n) for n in code.co_cellvars)
    new = types.FunctionType(
        code.replace(co_varnames=varnames, co_cellvars=cellvars),
        fn.__globals__,
        fn.__name__,
        fn.__defaults__,
        fn.__closure__,
    )
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__, new.__module__, new.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
    new.__dict__.update(fn.__dict__)
    return new
