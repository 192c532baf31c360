"""What every test folder shares: polling (:func:`wait_for`), the environment of the helper
processes tests start (:func:`python_env`), a bundled plugin's module without a host
(:func:`bundled_module`).

Import scheme (the same in every folder): ``tests/`` is the import root (``pythonpath`` in
``pyproject.toml``'s ``[tool.pytest.ini_options]``), each test folder is a package under it, and
helpers are imported by their absolute name from there: ``from support import wait_for``,
``import servers``, ``from rpc.rpckit import AsgiClient``, ``from sync.helpers import sid``.
No import-path edits and no relative imports.
"""

from __future__ import annotations

from support.paths import ROOT, TESTS, python_env
from support.plugins import bundled_module
from support.waiting import wait_for

__all__ = ["ROOT", "TESTS", "bundled_module", "python_env", "wait_for"]
