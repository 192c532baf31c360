"""Where the tests live, and the environment of the Python processes they start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

#: ``tests/``: the import root of the test helpers (``pythonpath`` in ``pyproject.toml``).
TESTS = Path(__file__).resolve().parents[1]
#: The repository (``src/``, ``contrib_plugins/``, ``benchmarks/`` ...).
ROOT = TESTS.parent


def python_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) with ``tests/`` first on ``PYTHONPATH``:
    a helper process (``python -m registry.worker ...``, ``python -c "from kv import ..."``)
    imports the helpers by the same names as the tests."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    return env
