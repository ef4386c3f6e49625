"""A registry to change freely in a test: a copy of the shipped one, and variants of its served set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fraudflow.manifest import Manifest
from fraudflow.registry import Registry, default_models_root, resolve


def copy_registry(target: Path) -> Path:
    shutil.copytree(default_models_root(), target)
    return target


def publish_variant(root: Path, edit: dict[str, Any]) -> str:
    """A copy of the served version with `edit` (dotted paths) applied to its manifest, published under its
    new version."""
    source = resolve(root)
    stage = root / "versions" / ".staging-test"
    shutil.copytree(source, stage)
    data = json.loads((stage / "manifest.json").read_text())
    for dotted, value in edit.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    manifest = Manifest.model_validate(data)
    manifest.model_copy(update={"version": manifest.content_version()}).write(stage)
    return Registry(root).publish(stage)
