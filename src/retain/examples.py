"""The example configs shipped inside the package, and ``retain init NAME [DEST]`` to copy one out.

A ``pip install retain`` has no repository checkout, so the ready-made experiments of the
``configs/`` folder travel in the wheel (``retain/configs`` is a link to that folder, so there is
one copy of each file). A config is copied, never linked: the user is meant to edit it. A sweep
file that names a shipped run config as its ``base`` is copied together with it, so the pair
runs from where it was put.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

import yaml

from retain.errors import ConfigError


def _folder() -> Path:
    return Path(str(resources.files("retain") / "configs"))


def example_configs() -> dict[str, Path]:
    """Shipped config name (file stem) -> its path inside the installed package."""
    return {p.stem: p for p in sorted(_folder().glob("*.yaml"))}


def describe_examples() -> str:
    """One line per shipped config: its name and the first comment or its run name."""
    lines = []
    for name, path in example_configs().items():
        lines.append(f"  {name:<26} {_summary(path)}".rstrip())
    return "\n".join(lines)


def _summary(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("#"):
            text = text.lstrip("# ").strip()
            return text if len(text) <= 90 else text[:89].rstrip() + "…"
        if text:
            break
    return ""


def _base_of(path: Path) -> Optional[str]:
    """The shipped run config a sweep file builds on (its ``base:`` file name), if any."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    base = data.get("base") if isinstance(data, dict) else None
    if isinstance(base, str) and Path(base).stem in example_configs() and "/" not in base:
        return base
    return None


def copy_example(name: str, dest: Optional[Path] = None) -> list[Path]:
    """Copy the shipped config ``name`` (with or without .yaml) to ``dest`` (a folder, default the
    current one, or a file name ending in .yaml); returns the files written. Existing files are
    never overwritten."""
    shipped = example_configs()
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in shipped:
        raise ConfigError(f"init: no shipped config named {name!r}; the shipped configs are:\n{describe_examples()}")
    dest = Path(dest) if dest is not None else Path.cwd()
    target = dest if dest.suffix in (".yaml", ".yml") else dest / shipped[stem].name
    copies = [(shipped[stem], target)]
    base = _base_of(shipped[stem])
    if base is not None:
        copies.append((shipped[Path(base).stem], target.parent / base))
    for _, path in copies:
        if path.exists():
            raise ConfigError(f"init: {path} exists; remove it or name another destination")
    target.parent.mkdir(parents=True, exist_ok=True)
    for source, path in copies:
        with open(path, "x", encoding="utf-8") as handle:  # "x": never replace a file made meanwhile
            handle.write(source.read_text(encoding="utf-8"))
    return [path for _, path in copies]
