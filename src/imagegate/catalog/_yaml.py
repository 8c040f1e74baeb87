"""YAML parsing for the catalog's data files, with libyaml where PyYAML was built with it."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's loader is about ten times faster than the pure-Python one; every local CLI
# command parses the whole catalog, so it shows.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    """One YAML document, with the safe loader's types only."""
    return yaml.load(text, Loader=_Loader)
