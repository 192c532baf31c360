"""``manifest.toml``: the model and its strict, report-everything validation.

Keys (the original's, plus ours): ``name``, ``description``, ``kind``, ``onInit``, ``onShutdown``,
``export = [{extPoint, impl}]``; ``module``, ``version``, ``requires``, ``build_time``; for
kind RegisterJsonRpc, ``perms = { Method = "read" }`` (the permission each JSON-RPC method
needs: ``read``, ``write`` or ``admin``; a method left out needs ``write``, see
:mod:`sectorhooks_spec.rpc`).
:func:`check_manifest` returns every problem at once; :func:`parse_manifest` raises them as one
:class:`~sectorhooks_spec.errors.ManifestError`.
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

import attrs

from .errors import ManifestError, Problem
from .kinds import LIFECYCLE_HOOKS, Kind, ext_points
from .rpc import RPC_PERMS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by tox on 3.9/3.10
    import tomli as tomllib

MANIFEST_FILE = "manifest.toml"

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TOML_POS_RE = re.compile(r"\(at line (\d+), column (\d+)\)")
#: A JSON-RPC method name (the host's rule for a handler's public routines).
_METHOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")

KNOWN_KEYS = (
    "name",
    "description",
    "kind",
    "module",
    "onInit",
    "onShutdown",
    "version",
    "requires",
    "build_time",
    "export",
    "perms",
)
EXPORT_KEYS = ("extPoint", "impl")


@attrs.frozen
class Export:
    """One ``{extPoint, impl}`` entry, with the hook it binds to and its index in ``export``."""

    ext_point: str
    impl: str
    hook: str
    index: int = 0


@attrs.frozen
class Manifest:
    """A validated manifest."""

    name: str
    kind: Kind
    path: str
    description: str = ""
    module: str = ""
    on_init: Optional[str] = None
    on_shutdown: Optional[str] = None
    version: str = ""
    requires: Tuple[str, ...] = ()
    build_time: str = ""
    exports: Tuple[Export, ...] = ()
    #: RegisterJsonRpc only: method name -> permission (``read``/``write``/``admin``).
    perms: Mapping[str, str] = attrs.field(factory=dict, hash=False)

    @property
    def qualified_name(self) -> str:
        """``Kind/name``, as the host logs it."""
        return f"{self.kind.value}/{self.name}"

    def bindings(self) -> Dict[str, str]:
        """Hook name -> impl function name, lifecycle included."""
        out = {e.hook: e.impl for e in self.exports}
        if self.on_init:
            out[LIFECYCLE_HOOKS["onInit"]] = self.on_init
        if self.on_shutdown:
            out[LIFECYCLE_HOOKS["onShutdown"]] = self.on_shutdown
        return out


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(choices)}"


def load_toml(text: str, path: str) -> Tuple[Optional[Dict[str, Any]], List[Problem]]:
    """Parse TOML text; a syntax error becomes a Problem with line and column."""
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS_RE.search(msg)
        line = int(m.group(1)) if m else getattr(exc, "lineno", None)
        col = int(m.group(2)) if m else getattr(exc, "colno", None)
        if line is None and "end of document" in msg:
            # tomllib reports errors at EOF without a position: point at the last character.
            lines = text.split("\n")
            line, col = len(lines), len(lines[-1]) + 1
        msg = _TOML_POS_RE.sub("", msg).strip()
        return None, [Problem(path, "<toml>", f"TOML syntax error: {msg}", "fix the syntax", line, col)]


def check_manifest(data: Mapping[str, Any], path: str) -> Tuple[Optional[Manifest], List[Problem]]:
    """Validate parsed manifest data; returns the model (when buildable) and every problem.

    The model is returned even when some problems are found, as long as name and kind could be
    read (with the well-formed exports only), so a loader can go on to check those impls against
    the module too. Any problem means the manifest is invalid: :func:`parse_manifest` raises.
    """
    problems: List[Problem] = []

    def bad(field: str, message: str, hint: str = "") -> None:
        problems.append(Problem(path, field, message, hint))

    for key in data:
        if key not in KNOWN_KEYS:
            bad(key, f"unknown key {key!r}", _suggest(key, KNOWN_KEYS))

    def text(key: str, required: bool = False) -> Optional[str]:
        value = data.get(key)
        if value is None:
            if required:
                bad(key, f"missing required key {key!r}", f'add {key} = "..."')
            return None
        if not isinstance(value, str):
            bad(key, f"must be a string, got {type(value).__name__}")
            return None
        return value

    name = text("name", required=True)
    if name is not None and not _NAME_RE.fullmatch(name):
        bad(
            "name", f"invalid plugin name {name!r}", "use letters, digits, '_', '-', '.'; start with a letter"
        )
        name = None

    kind: Optional[Kind] = None
    kind_text = text("kind", required=True)
    if kind_text is not None:
        try:
            kind = Kind(kind_text)
        except ValueError:
            bad("kind", f"unknown kind {kind_text!r}", _suggest(kind_text, [k.value for k in Kind]))

    description = text("description") or ""
    version = text("version") or ""
    build_time = text("build_time") or ""
    module = text("module")
    if module is not None and not _MODULE_RE.fullmatch(module):
        bad("module", f"invalid module name {module!r}", "a dotted Python module path, e.g. 'mypkg.plugin'")
        module = None
    if module is None and name is not None:
        module = name.replace("-", "_").replace(".", "_")

    lifecycle: Dict[str, Optional[str]] = {}
    for key in LIFECYCLE_HOOKS:
        fn = text(key)
        if fn is not None and not _IDENT_RE.fullmatch(fn):
            bad(key, f"{fn!r} is not a function name", "name a top-level function of the module")
            fn = None
        lifecycle[key] = fn

    requires: List[str] = []
    raw_requires = data.get("requires", [])
    if not isinstance(raw_requires, list) or not all(isinstance(r, str) for r in raw_requires):
        bad("requires", "must be a list of requirement strings", 'e.g. requires = ["sqlalchemy>=2.0"]')
    else:
        requires = [r.strip() for r in raw_requires]
        for i, req in enumerate(requires):
            if not req:
                bad(f"requires[{i}]", "empty requirement")

    exports = _check_exports(data.get("export", []), kind, path, problems)
    perms = _check_perms(data.get("perms"), kind, path, problems)

    if kind is not None:
        exported = {e.ext_point for e in exports}
        for point in ext_points(kind).values():
            if point.required and point.name not in exported:
                bad(
                    "export",
                    f"kind {kind.value} requires extPoint {point.name!r}, which is not exported",
                    f'add {{ extPoint = "{point.name}", impl = "<function>" }}',
                )
        for key, fn in lifecycle.items():
            if fn is None:
                continue
            clash = [e for e in exports if e.impl == fn]
            for e in clash:
                bad(
                    key,
                    f"{key} = {fn!r} is also the impl of extPoint {e.ext_point!r}",
                    f"{key} runs once at plugin start; {e.ext_point} is an event hook. "
                    "Give them separate functions",
                )

    if name is None or kind is None:
        return None, problems
    manifest = Manifest(
        name=name,
        kind=kind,
        path=path,
        description=description,
        module=module or name,
        on_init=lifecycle["onInit"],
        on_shutdown=lifecycle["onShutdown"],
        version=version,
        requires=tuple(requires),
        build_time=build_time,
        exports=tuple(exports),
        perms=perms,
    )
    return manifest, problems


def _check_perms(raw: Any, kind: Optional[Kind], path: str, problems: List[Problem]) -> Dict[str, str]:
    """The well-formed entries of ``perms = { Method = "read" }`` (each bad one is a problem)."""
    if raw is None:
        return {}
    example = 'perms = { Hello = "read" }'
    if kind is not None and kind is not Kind.REGISTER_JSON_RPC:
        problems.append(
            Problem(
                path,
                "perms",
                f"perms is for kind RegisterJsonRpc (JSON-RPC method permissions), not {kind.value}",
                "remove the perms key",
            )
        )
        return {}
    if not isinstance(raw, dict):
        problems.append(
            Problem(
                path, "perms", f"must be a table of method = permission, got {type(raw).__name__}", example
            )
        )
        return {}
    out: Dict[str, str] = {}
    allowed = ", ".join(map(repr, RPC_PERMS))
    for method, perm in raw.items():
        field = f"perms.{method}"
        if not _METHOD_RE.fullmatch(method):
            problems.append(
                Problem(
                    path,
                    field,
                    f"{method!r} is not a method name",
                    "a public method of the handler: a letter, then letters, digits or '_'",
                )
            )
        elif perm not in RPC_PERMS:
            shown = perm if isinstance(perm, str) else type(perm).__name__
            hint = _suggest(perm, RPC_PERMS) if isinstance(perm, str) else f"allowed: {allowed}"
            problems.append(Problem(path, field, f"unknown permission {shown!r}", hint))
        else:
            out[method] = perm
    return out


def _check_exports(raw: Any, kind: Optional[Kind], path: str, problems: List[Problem]) -> List[Export]:
    """The well-formed exports (a malformed entry is a problem and is left out)."""
    if not isinstance(raw, list):
        problems.append(
            Problem(
                path, "export", "must be an array of tables", 'export = [{ extPoint = "...", impl = "..." }]'
            )
        )
        return []
    allowed = ext_points(kind) if kind is not None else {}
    exports: List[Export] = []
    seen: Dict[str, int] = {}
    for i, entry in enumerate(raw):
        field = f"export[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(path, field, "must be a table { extPoint = ..., impl = ... }"))
            continue
        for key in entry:
            if key not in EXPORT_KEYS:
                problems.append(
                    Problem(path, f"{field}.{key}", f"unknown key {key!r}", _suggest(key, EXPORT_KEYS))
                )
        point, impl = entry.get("extPoint"), entry.get("impl")
        if not isinstance(point, str):
            problems.append(Problem(path, f"{field}.extPoint", "missing or not a string"))
        if not isinstance(impl, str) or not _IDENT_RE.fullmatch(impl):
            problems.append(
                Problem(
                    path,
                    f"{field}.impl",
                    f"missing or not a function name: {impl!r}",
                    "name a top-level function",
                )
            )
        if not isinstance(point, str) or not isinstance(impl, str):
            continue
        if kind is None:
            continue
        spec = allowed.get(point)
        if spec is None:
            problems.append(
                Problem(
                    path,
                    f"{field}.extPoint",
                    f"{point!r} is not an extension point of kind {kind.value}",
                    _suggest(point, allowed),
                )
            )
            continue
        if point in seen:
            problems.append(
                Problem(
                    path, f"{field}.extPoint", f"{point!r} is exported twice (also export[{seen[point]}])"
                )
            )
            continue
        seen[point] = i
        exports.append(Export(point, impl, spec.hook, i))
    return exports


def parse_manifest(text: str, path: str = MANIFEST_FILE) -> Manifest:
    """Parse and validate manifest text; raises ``ManifestError`` listing every problem."""
    data, problems = load_toml(text, path)
    manifest = None
    if data is not None:
        manifest, problems = check_manifest(data, path)
    if problems or manifest is None:
        raise ManifestError(path, problems, plugin=manifest.name if manifest else None)
    return manifest


__all__ = [
    "EXPORT_KEYS",
    "KNOWN_KEYS",
    "MANIFEST_FILE",
    "Export",
    "Manifest",
    "ManifestError",
    "Problem",
    "check_manifest",
    "load_toml",
    "parse_manifest",
]
