"""``sectorhooks plugin check-dep``: a plugin's ``requires`` against the host's installed packages.

Plugins run inside the host's interpreter, so they share its packages: a plugin wanting
``sqlalchemy>=3`` in a host with 2.1 would fail at some later import or call. :func:`unsatisfied`
says so up front, one line per conflict (``name: plugin wants X, host has Y``); the loader refuses
such a plugin with those lines, and ``check-dep --fix`` rewrites ``requires`` to ranges the host
satisfies: ``name>=<major.minor>,<<major+1>`` of the installed version (``>=0.<minor>,<0.<minor+1>``
below 1.0, where minor versions break; ``==<installed>`` when that range would not contain it,
e.g. a pre-release). Requirements whose environment marker is false here are skipped; extras are
not resolved (only the named distribution's version is checked).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import attrs
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sectorhooks_spec.manifest import MANIFEST_FILE, load_toml

from .errors import SectorhooksError

log = logging.getLogger(__name__)

BACKUP_SUFFIX = ".bak"


def installed_version(name: str) -> Optional[str]:
    """Version of the installed distribution ``name`` (any spelling), or ``None``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    want = canonicalize_name(name)
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or ""
        if canonicalize_name(dist_name) == want:
            return dist.version
    return None


@attrs.frozen
class Conflict:
    """One requirement the host does not satisfy."""

    requirement: str
    name: str
    wants: str
    has: Optional[str]  # installed version, None when not installed
    invalid: bool = False

    def __str__(self) -> str:
        if self.invalid:
            return f"{self.requirement!r}: {self.wants}"
        has = self.has if self.has is not None else "none (not installed)"
        return f"{self.name}: plugin wants {self.wants}, host has {has}"


def conflicts(requires: Iterable[str]) -> List[Conflict]:
    """Every requirement of ``requires`` the running environment does not satisfy."""
    out: List[Conflict] = []
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            why = str(exc).splitlines()[0] if str(exc) else "unparsable"
            out.append(
                Conflict(
                    line, line, f"invalid requirement ({why}); use PEP 508, e.g. 'name>=1.2'", None, True
                )
            )
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        wants = str(req.specifier) or "any version"
        have = installed_version(req.name)
        if have is None:
            out.append(Conflict(line, req.name, wants, None))
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append(Conflict(line, req.name, wants, have))
    return out


def unsatisfied(requires: Iterable[str]) -> List[str]:
    """One ``name: plugin wants X, host has Y`` line per unsatisfied requirement (empty: all good).

    Called by the host before importing a plugin, and by ``plugin check-dep``.
    """
    return [str(c) for c in conflicts(requires)]


def compatible_range(version: str) -> str:
    """The specifier ``--fix`` writes for an installed ``version``."""
    try:
        v = Version(version)
    except InvalidVersion:
        return f"==={version}"
    major = v.release[0]
    minor = v.release[1] if len(v.release) > 1 else 0
    if major >= 1:
        spec = f">={major}.{minor},<{major + 1}"
    else:
        spec = f">=0.{minor},<0.{minor + 1}"
    return spec if SpecifierSet(spec).contains(v, prereleases=False) else f"=={version}"


def fixed_requirement(line: str, version: str) -> str:
    """``line`` with its version specifier replaced by :func:`compatible_range` (extras, marker kept)."""
    req = Requirement(line)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker is not None else ""
    return f"{req.name}{extras}{compatible_range(version)}{marker}"


# --- rewriting the manifest --------------------------------------------------------------


def _array_span(text: str, key: str) -> Optional[Tuple[int, int]]:
    """``(start, end)`` of the top-level ``key = [...]`` array value in TOML ``text``, brackets included."""
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if stripped.startswith("["):
            break  # a table header: top-level keys end here
        head = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
        if head == key and line == stripped:
            start = text.index("[", pos + len(line.split("=", 1)[0]))
            end = _closing_bracket(text, start)
            return (start, end) if end is not None else None
        pos += len(line)
    return None


def _closing_bracket(text: str, start: int) -> Optional[int]:
    """Index just past the ``]`` matching ``text[start] == "["``, skipping strings and comments."""
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if (c == '"' and text[j] == "\\") else 1
            i = j + len(quote)
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def replace_requires(text: str, requires: List[str], path: str = MANIFEST_FILE) -> str:
    """``text`` with its top-level ``requires`` array replaced; every other byte kept."""
    span = _array_span(text, "requires")
    if span is None:
        raise SectorhooksError(f"{path}: no top-level 'requires = [...]' to rewrite")
    start, end = span
    old = text[start:end]
    items = [json.dumps(r, ensure_ascii=False) for r in requires]
    if "\n" in old and items:
        new = "[\n" + "".join(f"  {it},\n" for it in items) + "]"
    else:
        new = "[" + ", ".join(items) + "]"
    out = text[:start] + new + text[end:]
    before, _ = load_toml(text, path)
    after, _ = load_toml(out, path)
    if after != dict(before or {}, requires=requires):
        raise SectorhooksError(f"{path}: could not rewrite 'requires' textually; edit it by hand")
    return out


@attrs.frozen
class FixResult:
    """Outcome of ``check-dep --fix``."""

    fixed: bool  # the manifest now satisfies the host
    changed: Tuple[Tuple[str, str], ...]  # (old line, new line)
    remaining: Tuple[str, ...]  # conflict lines left (the manifest was restored)
    backup: Optional[Path]


def manifest_requires(path: Path) -> Tuple[Path, List[str]]:
    """The manifest file at (or in) ``path`` and its ``requires`` list."""
    mpath = path / MANIFEST_FILE if path.is_dir() else path
    if not mpath.is_file():
        raise SectorhooksError(
            f"{path}: no manifest.toml here (give a plugin directory or its manifest.toml)"
        )
    data, problems = load_toml(mpath.read_text(encoding="utf-8"), str(mpath))
    if data is None:
        raise SectorhooksError(str(problems[0]))
    reqs = data.get("requires", [])
    if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
        raise SectorhooksError(f"{mpath}: [requires] must be a list of requirement strings")
    return mpath, [r.strip() for r in reqs]


def fix(path: Path) -> FixResult:
    """Rewrite the manifest's conflicting requirements to ranges the host satisfies.

    The original is kept as ``manifest.toml.bak``; when conflicts remain (a package that is not
    installed, an invalid line) the original is put back and they are returned.
    """
    mpath, requires = manifest_requires(path)
    found = {c.requirement: c for c in conflicts(requires)}
    if not found:
        return FixResult(True, (), (), None)
    new_requires: List[str] = []
    changed: List[Tuple[str, str]] = []
    for line in requires:
        c = found.get(line)
        if c is not None and c.has is not None and not c.invalid:
            new = fixed_requirement(line, c.has)
            changed.append((line, new))
            line = new
        new_requires.append(line)
    backup = mpath.with_name(mpath.name + BACKUP_SUFFIX)
    shutil.copy2(mpath, backup)
    original = mpath.read_text(encoding="utf-8")
    try:
        mpath.write_text(replace_requires(original, new_requires, str(mpath)), encoding="utf-8")
        remaining = unsatisfied(manifest_requires(mpath)[1])
    except BaseException:
        shutil.copy2(backup, mpath)
        raise
    if remaining:
        shutil.copy2(backup, mpath)
        log.info("check-dep --fix: %d conflict(s) remain, restored %s", len(remaining), mpath)
        return FixResult(False, tuple(changed), tuple(remaining), backup)
    return FixResult(True, tuple(changed), (), backup)
