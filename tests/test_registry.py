"""The model registry: versions published whole, served through one pointer switched atomically after the
set is verified, promotions and rollbacks audited, a set that no longer decides as it did at training refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fraudflow.cli.main import app as cli
from fraudflow.registry import CURRENT, Registry, RegistryError
from fraudflow.scoring import ModelError, ModelSet, Scorer
from tests.registry_helpers import copy_registry, publish_variant


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_registry(tmp_path / "registry")


def _models(root: Path, *args: str) -> Any:
    author = ["--author", "ana"] if args[0] in ("promote", "rollback", "challenge", "end-challenge") else []
    return CliRunner().invoke(cli, ["models", *args, "--root", str(root), *author])


def test_promote_and_roll_back_are_atomic_verified_and_audited(root: Path) -> None:
    shipped = Registry(root).current()
    assert shipped is not None
    other = publish_variant(root, {"thresholds.review": 0.01})  # a different set: another version
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
    cheaper = publish_variant(root, {"policy.review_cost": 0.01})
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


def test_a_challenger_is_scored_beside_the_champion_and_promoted_in_one_audited_command(root: Path) -> None:
    shipped = Registry(root).current()
    assert shipped is not None
    other = publish_variant(root, {"thresholds.review": 0.01})
    refused = _models(root, "challenge", shipped)
    assert refused.exit_code == 1
    assert "cannot also be its challenger" in refused.output

    assert _models(root, "challenge", other).exit_code == 0
    assert f"c {other}" in _models(root, "list").output
    scorer = Scorer(root)
    assert scorer.models.version == shipped  # the champion still decides
    assert scorer.challenger is not None
    assert scorer.challenger.version == other

    promoted = _models(root, "promote")  # no version: the challenger
    assert promoted.exit_code == 0, promoted.output
    registry = Registry(root)
    assert (registry.current(), registry.challenger()) == (other, None)
    assert scorer.reload().version == other
    assert scorer.challenger is None
    # A rollback returns to the version the promotion replaced: challenges change nothing served.
    assert registry.previous() == shipped
    history = [(e["action"], e["version"], e["previous"], e["author"]) for e in registry.history()]
    assert history == [("challenge", other, None, "ana"), ("promote", other, shipped, "ana")]
    assert _models(root, "end-challenge").exit_code == 1


def test_a_challenger_that_fails_its_checks_is_not_scored_and_the_champion_serves(root: Path) -> None:
    shipped = Registry(root).current()
    other = publish_variant(root, {"thresholds.review": 0.01})
    assert _models(root, "challenge", other).exit_code == 0
    (root / "versions" / other / "sample.npz").write_bytes(b"tampered")
    scorer = Scorer(root)
    assert scorer.models.version == shipped
    assert scorer.challenger is None
    assert scorer.challenger_error is not None
    assert "sample" in scorer.challenger_error
    assert _models(root, "end-challenge").exit_code == 0
    assert Registry(root).challenger() is None
