"""``sectorhooks plugin build``: validate a plugin directory and write a reproducible zip bundle.

The bundle ``plugin-<name>-<version>.zip`` holds the plugin's files with ``manifest.toml`` at the
root, where the loader's ``zip_candidate`` looks, and is imported through zipimport. The bundled
manifest gets ``build_time`` (RFC 3339, UTC) rewritten in place; everything else in it is kept
byte for byte. Reproducible, as in https://reproducible-builds.org/docs/source-date-epoch/: the
time comes from ``SOURCE_DATE_EPOCH`` when set, entries are sorted, every entry carries the same
timestamp (that time, or 1980-01-01 when it is unset) and fixed permissions, caches
(``__pycache__``, ``*.pyc``) and hidden files are left out, and compression is deflate level 9.
Two builds of the same source with the same ``SOURCE_DATE_EPOCH`` are byte-identical.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import attrs

from sectorhooks_spec.manifest import MANIFEST_FILE, Manifest, load_toml

from . import loader
from .config import HostConfig, PluginsConfig
from .errors import BuildError, SectorhooksError

log = logging.getLogger(__name__)

#: Zip timestamps cannot go below this (DOS date format).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
DIR_MODE = 0o040755
_SKIP_DIRS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo", ".bak", ".orig", ".swp", "~")
_BUILD_TIME_RE = re.compile(r"^build_time[ \t]*=[^\n]*$", re.MULTILINE)
_ANCHOR_RE = re.compile(r"^(?:version|name)[ \t]*=[^\n]*$", re.MULTILINE)


@attrs.frozen
class BuildResult:
    """What ``build`` wrote."""

    path: Path
    name: str
    version: str
    build_time: str
    files: Tuple[str, ...]


def source_date_epoch(env: Optional[Dict[str, str]] = None) -> Optional[int]:
    """``SOURCE_DATE_EPOCH`` as an int, ``None`` when unset; a bad value is a clear error."""
    raw = (os.environ if env is None else env).get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise SectorhooksError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds since 1970")
    return int(raw)


def rfc3339(epoch: float) -> str:
    """``2024-05-01T12:00:00Z`` for a Unix time."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def zip_timestamp(epoch: Optional[int]) -> Tuple[int, int, int, int, int, int]:
    """The DOS timestamp every entry carries (UTC; clamped to the zip format's range)."""
    if epoch is None:
        return ZIP_EPOCH
    t = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    stamp = (t.year, t.month, t.day, t.hour, t.minute, t.second - t.second % 2)
    return max(ZIP_EPOCH, min(stamp, (2107, 12, 31, 23, 59, 58)))


def stamp_build_time(text: str, build_time: str, path: str = MANIFEST_FILE) -> str:
    """``text`` with the top-level ``build_time`` key set, every other byte kept.

    Replaces an existing ``build_time = ...`` line, else inserts one after ``version`` (or
    ``name``). The result is parsed again and must differ from the input only in that key.
    """
    line = f'build_time = "{build_time}"'
    if _BUILD_TIME_RE.search(text):
        out = _BUILD_TIME_RE.sub(line, text, count=1)
    else:
        anchors = list(_ANCHOR_RE.finditer(text))
        if not anchors:
            raise SectorhooksError(f"{path}: no top-level 'name = ...' line to put build_time after")
        at = max(anchors, key=lambda m: m.group(0).startswith("version")).end()
        out = text[:at] + "\n" + line + text[at:]
    before, _ = load_toml(text, path)
    after, problems = load_toml(out, path)
    expected = dict(before or {}, build_time=build_time)
    if after != expected:
        why = problems[0].message if problems else "other keys changed"
        raise SectorhooksError(
            f"{path}: could not set build_time textually ({why}); write it as a plain top-level line "
            'build_time = "" near name/version'
        )
    return out


def _files(src: Path, out_dir: Optional[Path]) -> List[Tuple[str, Path]]:
    """``(archive name, file)`` of every file to bundle, sorted by archive name."""
    skip_root = out_dir.resolve() if out_dir is not None else None
    found: List[Tuple[str, Path]] = []
    for root, dirs, files in os.walk(src):
        here = Path(root)
        dirs[:] = [
            d
            for d in dirs
            if d not in _SKIP_DIRS and not d.startswith(".") and (here / d).resolve() != skip_root
        ]
        for f in files:
            if f.startswith(".") or f.endswith(_SKIP_SUFFIXES):
                continue
            if f.startswith("plugin-") and f.endswith(".zip") and here == src:
                continue  # an earlier bundle built into the source directory
            path = here / f
            found.append((path.relative_to(src).as_posix(), path))
    return sorted(found)


def _entry(name: str, stamp: Tuple[int, int, int, int, int, int], mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.create_system = 3  # unix, so external_attr carries the permissions
    info.external_attr = mode << 16
    if name.endswith("/"):
        info.external_attr |= 0x10  # MS-DOS directory flag
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_zip(target: Path, members: List[Tuple[str, bytes]], epoch: Optional[int]) -> None:
    """Write ``members`` (name, data) as a deterministic zip, atomically (temp file + rename)."""
    stamp = zip_timestamp(epoch)
    dirs = sorted({"/".join(n.split("/")[:i]) + "/" for n, _ in members for i in range(1, n.count("/") + 1)})
    entries = sorted([(d, None) for d in dirs] + [(n, d) for n, d in members], key=lambda e: e[0])
    fd, tmp = tempfile.mkstemp(prefix=".plugin-", suffix=".zip.tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
            for name, data in entries:
                if data is None:
                    zf.writestr(_entry(name, stamp, DIR_MODE), b"")
                else:
                    zf.writestr(_entry(name, stamp, FILE_MODE), data, compresslevel=9)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def validate(path: Path) -> Tuple[Optional[Manifest], List[str]]:
    """Load the plugin at ``path`` (directory or bundle) in an isolated host: manifest + import."""
    from .host import PluginHost, PluginStatus

    try:
        found = [(loader.zip_candidate(path), None)] if path.is_file() else list(loader.scan_dir(path))
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read plugin: {exc}"]
    except SectorhooksError as exc:
        return None, [str(p) for p in getattr(exc, "problems", ())] or [str(exc)]
    candidate, error = found[0] if found else (None, None)
    if candidate is None:
        return None, [str(p) for p in error.problems] if error else [f"{path}: no plugin found"]
    host = PluginHost(HostConfig(plugins=PluginsConfig(bundled=False, entry_points=False)))
    # The build machine need not match the target host; `check-dep` and the loader check requires.
    record = host.add(candidate, check_requires=False)
    problems = [str(p) for p in record.problems]
    for orphan in host.orphans:
        problems += [str(p) for p in orphan.problems]
    if record.status is PluginStatus.FAILED:
        problems.append(record.error)
    return record.manifest, problems


def build(
    src_dir: Path, out_dir: Path, epoch: Optional[int] = None, now: Optional[float] = None
) -> BuildResult:
    """Validate ``src_dir`` and write ``out_dir/plugin-<name>-<version>.zip``; raises BuildError.

    ``epoch`` is ``SOURCE_DATE_EPOCH`` (read from the environment when ``None``); without it the
    build time is ``now`` (the wall clock) and the zip entries carry 1980-01-01.
    """
    src_dir = Path(src_dir)
    if epoch is None:
        epoch = source_date_epoch()
    mpath = src_dir / MANIFEST_FILE
    if not mpath.is_file():
        raise BuildError(
            src_dir, [f"{mpath}: not found (a plugin directory holds manifest.toml and its module)"]
        )
    manifest, problems = validate(src_dir)
    if manifest is not None and not manifest.version:
        problems.append(f'{mpath}: [version] a bundle needs a version: add version = "0.1.0"')
    if problems or manifest is None:
        raise BuildError(src_dir, problems or [f"{mpath}: invalid manifest"])
    build_time = rfc3339(epoch if epoch is not None else (time.time() if now is None else now))
    text = stamp_build_time(mpath.read_text(encoding="utf-8"), build_time, str(mpath))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    members = [
        (name, text.encode("utf-8") if name == MANIFEST_FILE else path.read_bytes())
        for name, path in _files(src_dir, out_dir)
    ]
    target = out_dir / f"plugin-{manifest.name}-{manifest.version}.zip"
    write_zip(target, members, epoch)
    _, bundle_problems = validate(target)
    if bundle_problems:
        target.unlink(missing_ok=True)
        raise BuildError(src_dir, [f"the bundle does not load: {p}" for p in bundle_problems])
    log.info("built %s (%d files, build time %s)", target, len(members), build_time)
    return BuildResult(target, manifest.name, manifest.version, build_time, tuple(n for n, _ in members))
