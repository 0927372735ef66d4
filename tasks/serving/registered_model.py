"""A registered version's classifier, from Python: the short way in.

::

    from tasks.serving.registered_model import load_model
    model = load_model("registry", "fraud")          # the champion
    model.predict(batch)                              # decisions at the cost threshold
"""

from __future__ import annotations

from pathlib import Path

from tasks.decision.served_classifier import RareflowClassifier
from tasks.registry.open_registry import open_registry


def load_model(registry: str | Path, name: str, version: str = "champion"
               ) -> RareflowClassifier:
    """A registered version's classifier, checksum verified: the short way in from Python.

    Args:
        registry: The registry folder (as ``--registry``).
        name: The model name (as ``--name``).
        version: ``champion`` (default), ``latest`` or an id such as ``v0003``.
    """
    model, _ = open_registry(registry, name).load(version)
    return model
