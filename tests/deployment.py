"""What the deployment tests share: the Dockerfile's instructions and a check of commands and variables
against the real CLI and settings, so compose files and task definitions cannot drift from the code."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer.main

from fraudflow.cli.main import app as cli_app
from fraudflow.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
# Read by botocore, not by our settings: credentials for the emulators (on AWS the task role provides them).
BOTOCORE_NAMES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_SECRETS_MANAGER"}


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, arguments = pending.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage, from its FROM on."""
    steps = instructions()
    start = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[start:]


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's runtime stage (key=value pairs)."""
    env: dict[str, str] = {}
    for keyword, arguments in runtime_stage():
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in arguments.split())  # type: ignore[misc]
    return env


def _cli_envvars(command: Any) -> set[str]:
    names = {name for param in command.params for name in _as_list(getattr(param, "envvar", None))}
    for sub in getattr(command, "commands", {}).values():
        names |= _cli_envvars(sub)
    return names


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def settings_names() -> set[str]:
    return {
        str(choice)
        for field in Settings.model_fields.values()
        if field.validation_alias is not None
        for choice in getattr(field.validation_alias, "choices", [field.validation_alias])
    }


def known_environment_names() -> set[str]:
    """Every variable the image reads: settings (with aliases), CLI option envvars, botocore's credentials."""
    return settings_names() | _cli_envvars(typer.main.get_command(cli_app)) | BOTOCORE_NAMES


def settings_from(environment: dict[str, str]) -> Settings:
    """The settings a container with this environment (on top of the image's ENV) would load."""
    merged = {**image_environment(), **environment}
    known = settings_names()
    values: dict[str, Any] = {name: value for name, value in merged.items() if name in known}
    return Settings(_env_file=None, **values)


def parse_command(argv: list[str]) -> Any:
    """Parse a container command as the real program would (unknown options and bad values raise).

    Returns the innermost click context (typer vendors its own click, so contexts are duck-typed)."""
    program, *args = argv
    if program == "uvicorn":
        ctx = importlib.import_module("uvicorn.main").main.make_context("uvicorn", args)
        module, _, attribute = str(ctx.params["app"]).partition(":")
        assert hasattr(importlib.import_module(module), attribute), f"{ctx.params['app']} is not importable"
        return ctx
    assert program == "fraudflow", f"unknown program {program}"
    command = typer.main.get_command(cli_app)
    ctx = command.make_context("fraudflow", args)
    while hasattr(ctx.command, "resolve_command") and ctx.args + list(ctx._protected_args):
        name, sub, rest = ctx.command.resolve_command(ctx, list(ctx._protected_args) + ctx.args)
        assert sub is not None
        assert name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
    return ctx


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None
