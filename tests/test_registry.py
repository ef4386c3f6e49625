"""The model registry: versions published whole, served through one pointer switched atomically after the
set is verified, promotions and rollbacks audited, a set that no longer decides as it did at training refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fraudflow.cli.main import app as cli
from fraudflow.manifest import Manifest
from fraudflow.registry import CURRENT, Registry, RegistryError, default_models_root, resolve
from fraudflow.scoring import ModelError, ModelSet, Scorer


def _variant(root: Path, edit: dict[str, Any]) -> str:
    """A copy of the served version with `edit` applied to its manifest, published under its new version."""
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


@pytest.fixture
def root(tmp_path: Path) -> Path:
    target = tmp_path / "registry"
    shutil.copytree(default_models_root(), target)
    return target


def _models(root: Path, *args: str) -> Any:
    author = ["--author", "ana"] if args[0] in ("promote", "rollback") else []
    return CliRunner().invoke(cli, ["models", *args, "--root", str(root), *author])


def test_promote_and_roll_back_are_atomic_verified_and_audited(root: Path) -> None:
    shipped = Registry(root).current()
    assert shipped is not None
    other = _variant(root, {"thresholds.review": 0.01})  # a different set: another version
    assert other != shipped
    scorer = Scorer(root)
    assert scorer.models.version == shipped

    result = _models(root, "promote", other)
    assert result.exit_code == 0, result.output
    assert (root / CURRENT).read_text().strip() == other
    assert scorer.models.version == shipped  # a running scorer changes only when it reloads
    assert scorer.reload().version == other  # what POST /admin/reload-models does

    listed = _models(root, "list").output
    assert f"* {other}" in listed
    assert f"  {shipped}" in listed
    assert _models(root, "rollback").exit_code == 0
    assert Registry(root).current() == shipped
    refused = _models(root, "rollback")
    assert refused.exit_code == 1
    assert "nothing to roll back to" in refused.output
    history = [(e["action"], e["version"], e["previous"], e["author"]) for e in Registry(root).history()]
    assert history == [("promote", other, shipped, "ana"), ("rollback", shipped, other, "ana")]


def test_a_set_that_decides_its_stored_sample_differently_is_refused_and_the_served_one_stays(root: Path) -> None:
    shipped = Registry(root).current()
    # Cheap reviews: the same files and a valid, restamped manifest, but not the decisions it was trained to give.
    cheaper = _variant(root, {"policy.review_cost": 0.01})
    with pytest.raises(ModelError, match=r"decides \d+ of 256 stored validation transactions differently"):
        ModelSet(root / "versions" / cheaper)
    result = _models(root, "promote", cheaper)
    assert result.exit_code == 1
    assert "differently than at training" in result.output
    assert f"still serving {shipped}" in result.output
    assert Registry(root).current() == shipped


def test_an_unknown_version_names_those_published(root: Path) -> None:
    with pytest.raises(RegistryError, match="no published version 'nope'"):
        Registry(root).folder("nope")
    result = _models(root, "promote", "../../etc")
    assert result.exit_code == 1
    assert "no published version" in result.output
