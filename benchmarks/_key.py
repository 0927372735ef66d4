"""A throwaway registry signing key for a benchmark run when none is configured: benchmarks
write their own registries, and every rareflow process they start inherits the key."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_signing_key() -> None:
    """Set ``RAREFLOW_SIGNING_KEY`` for this process and its children unless a key (or the
    unsigned opt-in) is already configured."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tasks.registry.signing import KEY_ENV, allow_unsigned, generate_key, signing_key

    if signing_key() is None and not allow_unsigned():
        os.environ[KEY_ENV] = generate_key()
