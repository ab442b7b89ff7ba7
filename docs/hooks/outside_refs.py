"""mkdocs hook: no doc, docstring, comment or help text may point outside the repository.

Butter was written from a specification and design notes that users do not have. Their references (a
section sign after the spec's name, the shared folder's path, the design notes' quoted section names) must
not come back: the protocol is described on this site (docs/protocol/), and a design choice is explained
where it is made. The build fails naming each file and line that has one. Registered under ``hooks:`` in
mkdocs.yml, so `mkdocs build --strict` in CI checks the whole repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

# Built from pieces, so that this file does not match itself.
FORBIDDEN = re.compile("|".join((re.escape("SPEC" + " §"), re.escape("../" + "shared"), re.escape("SPEC" + ".md"),
                                 re.escape("DESIGN" + ' "'))))
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ""}


def on_config(config: Any, **kwargs: Any) -> Any:
    root = Path(config.config_file_path).parent
    found = [f"{path}:{number}: {line.strip()[:100]}" for path, number, line in _matches(root)]
    if found:
        raise PluginError("references to files outside the repository (say it here, or cite the published source):\n  "
                          + "\n  ".join(found))
    return config


def _matches(root: Path) -> Any:
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        path = root / name
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                yield name, number, line
