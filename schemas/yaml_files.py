"""Reading YAML settings files safely (a size cap and a bound on what aliases expand to), and
merging layers of settings (:func:`merge`: a config file over the project file, the
environment's storage options over a config's).

PyYAML's ``safe_load`` builds an aliased node once and shares it, so a "billion laughs"
document (nine levels of ten aliases) loads in microseconds, but anything that walks the
result (validation, an error message that prints the input) walks 10^9 nodes: a config file
hung above 4.7 GB. Here the composed node graph is measured first, counting each alias as the
whole node it stands for, and a document that expands beyond :data:`MAX_EXPANDED_NODES` is
refused without being expanded; the message names the file and never echoes its text.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from schemas.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a settings file of more than 1 MiB is a mistake
MAX_EXPANDED_NODES = 100_000  # prefect.yaml, the largest settings file shipped: about 300


def merge(low: dict, high: dict) -> dict:
    """``high`` over ``low``, nested mappings merged key by key."""
    out = dict(low)
    for key, value in high.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def expanded_size(node: yaml.Node, *, limit: int, seen: dict | None = None) -> int:
    """The number of nodes ``node`` stands for with every alias expanded (stops counting
    past ``limit``); linear in the composed graph, whatever the expansion."""
    seen = {} if seen is None else seen
    if id(node) in seen:
        return seen[id(node)]
    seen[id(node)] = limit + 1  # a node that contains itself expands without end
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        total += expanded_size(child, limit=limit, seen=seen)
        if total > limit:
            break
    seen[id(node)] = min(total, limit + 1)
    return seen[id(node)]


def load_yaml_file(path: Path, *, what: str = "config file") -> object:
    """The YAML (or JSON) document in ``path``, read within the caps above.

    Raises:
        ConfigError: the file is missing, too large, not valid YAML, or expands too far;
            one line naming the file (never its content).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {str(path)!r} is {size:,} bytes; a settings file holds at "
                          f"most {MAX_CONFIG_BYTES:,} bytes: point at the right file")
    try:
        loader = yaml.SafeLoader(path.read_bytes().decode("utf-8"))
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if expanded_size(node, limit=MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{what} {str(path)!r} expands to more than {MAX_EXPANDED_NODES:,} values "
                    "through its YAML aliases (&anchor/*alias); write the settings out or use "
                    "fewer aliases")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError as exc:
        raise ConfigError(f"{what} {str(path)!r} nests too deeply; flatten it") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}); save "
                          "it as UTF-8") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML{where} ({problem}); fix "
                          "its syntax") from exc
