"""The model registry: every published set in its own folder, one pointer naming the set to serve.

    <root>/versions/<version>/   manifest.json and the files it names; never changed once published
    <root>/CURRENT               the served version's name (replaced atomically: a reader sees old or new)
    <root>/CHALLENGER            optional: a version scored in shadow next to the served one, deciding nothing
    <root>/history.jsonl         every promotion, rollback and challenge: when, who, from, to

Training writes into a staging folder under versions/ and renames it to its version only once every check
has passed, so a failed run publishes nothing; promoting is one atomic rename of the pointer, after the set
has been loaded and verified; the previous versions stay for rollback. A folder holding a manifest.json
(no CURRENT) is a set on its own and is served as it is.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fraudflow
from fraudflow.errors import ExpectedError
from fraudflow.manifest import MANIFEST_FILE, Manifest

CURRENT = "CURRENT"
CHALLENGER = "CHALLENGER"
VERSIONS = "versions"
HISTORY = "history.jsonl"
STAGING_PREFIX = ".staging-"


def default_models_root() -> Path:
    """`models/` of a source checkout, else the copy shipped inside the wheel (a registry, or a set)."""
    package = Path(fraudflow.__file__).resolve().parent
    checkout = package.parent / "models"
    shipped = (checkout / CURRENT).is_file() or (checkout / MANIFEST_FILE).is_file()
    return checkout if shipped else package / "bundled_models"


def default_models_dir() -> Path:
    """The folder of the set served by default."""
    return resolve(default_models_root())


class RegistryError(ExpectedError):
    """A version that does not exist, or nothing to roll back to."""


def resolve(directory: Path) -> Path:
    """The folder of the set to serve: the version CURRENT names, else `directory` itself."""
    pointer = directory / CURRENT
    if pointer.is_file():
        return directory / VERSIONS / pointer.read_text().strip()
    return directory


def resolve_challenger(directory: Path) -> Path | None:
    """The folder of the challenger set, if the registry names one."""
    pointer = directory / CHALLENGER
    if pointer.is_file():
        return directory / VERSIONS / pointer.read_text().strip()
    return None


@dataclass(frozen=True)
class Version:
    name: str
    manifest: Manifest | None  # None: unreadable
    current: bool
    challenger: bool = False

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        if m is None:
            return {"version": self.name, "current": self.current, "problem": "manifest unreadable"}
        cost = m.metrics.get("policy", {}).get("test", {}).get("cost_policy", {}).get("cost_per_1000", {})
        return {
            "version": self.name,
            "current": self.current,
            "challenger": self.challenger,
            "created_at": m.created_at.isoformat(),
            "data": m.training_data.source,
            "pr_auc": m.metrics.get("pr_auc"),
            "cost_per_1000": cost.get("value"),
        }


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS

    def _pointer(self, name: str) -> str | None:
        pointer = self.root / name
        return pointer.read_text().strip() if pointer.is_file() else None

    def current(self) -> str | None:
        return self._pointer(CURRENT)

    def challenger(self) -> str | None:
        return self._pointer(CHALLENGER)

    def versions(self) -> list[Version]:
        """Published versions, newest first."""
        current, challenger = self.current(), self.challenger()
        found = []
        folders = self.versions_dir.iterdir() if self.versions_dir.is_dir() else iter(())
        for folder in folders:
            if folder.name.startswith(STAGING_PREFIX) or not folder.is_dir():
                continue
            try:
                manifest: Manifest | None = Manifest.read(folder)
            except (OSError, ValueError):
                manifest = None
            found.append(Version(folder.name, manifest, folder.name == current, folder.name == challenger))
        return sorted(
            found, key=lambda v: (v.manifest.created_at.timestamp() if v.manifest else 0, v.name), reverse=True
        )

    def staging(self) -> Path:
        """A fresh folder to train into, on the same file system as the versions (the rename is atomic)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.versions_dir))

    def publish(self, stage: Path) -> str:
        """Make a checked staging folder the version its manifest names; the same content published twice is
        one version."""
        version = Manifest.read(stage).version
        target = self.versions_dir / version
        if target.exists():
            shutil.rmtree(stage)
        else:
            stage.rename(target)
        return version

    def folder(self, version: str) -> Path:
        folder = self.versions_dir / version
        if not (folder / MANIFEST_FILE).is_file() or version.startswith(STAGING_PREFIX) or "/" in version:
            known = ", ".join(v.name for v in self.versions()) or "none"
            raise RegistryError(f"no published version {version!r} in {self.root} (published: {known})")
        return folder

    def _point(self, name: str, version: str) -> None:
        temporary = self.root / f".{name}.{os.getpid()}"
        temporary.write_text(version + "\n")
        os.replace(temporary, self.root / name)

    def _record(self, action: str, version: str | None, previous: str | None, author: str | None) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "action": action,
            "version": version,
            "previous": previous,
            "author": author or getpass.getuser(),
        }
        with (self.root / HISTORY).open("a") as log:
            log.write(json.dumps(entry) + "\n")

    def promote(self, version: str, author: str | None = None, action: str = "promote") -> str | None:
        """Point CURRENT at `version` (the caller has verified that it loads); returns the previous one. A
        challenger promoted stops being the challenger: it now decides."""
        self.folder(version)
        previous = self.current()
        self._point(CURRENT, version)
        if self.challenger() == version:
            (self.root / CHALLENGER).unlink()
        self._record(action, version, previous, author)
        return previous

    def challenge(self, version: str, author: str | None = None) -> str | None:
        """Name `version` (verified by the caller) the challenger; returns the challenger it replaces."""
        self.folder(version)
        if version == self.current():
            raise RegistryError(f"{version} is the served version: it cannot also be its challenger")
        previous = self.challenger()
        self._point(CHALLENGER, version)
        self._record("challenge", version, previous, author)
        return previous

    def end_challenge(self, author: str | None = None) -> str:
        """Stop scoring the challenger; returns it."""
        previous = self.challenger()
        if previous is None:
            raise RegistryError(f"no challenger in {self.root}")
        (self.root / CHALLENGER).unlink()
        self._record("end-challenge", None, previous, author)
        return previous

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def previous(self) -> str:
        """The version a rollback returns to: promotions stack the version they replaced, rollbacks pop."""
        stack: list[str] = []
        for entry in self.history():
            if entry["action"] not in ("promote", "rollback"):
                continue  # challenges change what is scored in shadow, not what is served
            if entry["action"] == "rollback":
                if stack:
                    stack.pop()
            elif entry.get("previous"):
                stack.append(str(entry["previous"]))
        if not stack:
            raise RegistryError("nothing to roll back to: no earlier version was replaced in this registry")
        return stack[-1]
