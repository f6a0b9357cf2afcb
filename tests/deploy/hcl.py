"""The deploy kit's Terraform, parsed with python-hcl2 into plain dicts.

python-hcl2 8 keeps HCL's quotes on labels and string literals (``"\\"users\\""``) and adds
``__is_block__`` / ``__comments__`` markers; :func:`load` drops the markers and the quotes
of plain literals, so a literal reads as its value and an expression as ``${...}``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "deploy" / "terraform"
MODULE = TERRAFORM / "modules" / "streamsim"
EXAMPLE = TERRAFORM / "example"

_MARKERS = {"__is_block__", "__comments__", "__inline_comments__"}


def _plain(value):
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k not in _MARKERS}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"' and "${" not in value:
        return value[1:-1]
    return value


@functools.cache
def load(directory: Path) -> dict[str, list]:
    """Every top-level block kind of the directory's ``.tf`` files, merged: ``{"resource": [...], ...}``."""
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            for kind, blocks in _plain(hcl2.load(handle)).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(directory: Path, kind: str = "resource") -> dict[str, dict[str, dict]]:
    """``{type: {name: body}}`` of the directory's resources (or data sources)."""
    found: dict[str, dict[str, dict]] = {}
    for block in load(directory).get(kind, []):
        for rtype, named in block.items():
            for name, body in named.items():
                found.setdefault(rtype, {})[name] = body
    return found


def merged_blocks(directory: Path, kind: str) -> dict:
    """``locals`` or ``variable`` blocks of a directory, merged into one dict."""
    merged: dict = {}
    for block in load(directory).get(kind, []):
        merged.update(block)
    return merged


def source_text(directory: Path) -> str:
    """The directory's ``.tf`` files with comment lines dropped (for reference checks)."""
    lines = []
    for path in sorted(directory.glob("*.tf")):
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines)


def unquote_template(text: str, **values: str) -> str:
    """A string template such as ``"${var.prefix}events"`` with ``var.NAME`` replaced by ``values``."""
    text = text.strip('"')
    return re.sub(r"\$\{var\.(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
