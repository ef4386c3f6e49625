"""Rule conditions in CEL (the Common Expression Language, as Kubernetes and Envoy use it): compiled once,
checked when written (syntax, known fields and lists, types, a true/false result), evaluated on the hot path.

CEL has no side effects, no loops without bounds and no access to anything but the values it is given, so a
condition can come from an analyst. The library evaluates in Rust; its checks here stand in for the static
type checker it lacks: the condition runs on sample transactions whose values drive both sides of every
comparison, and each must give true or false. A failure on some values only (a division by a count that
can be 0) is allowed: at run time it skips the rule for that transaction, counted.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from typing import Any

import cel

from fraudflow.decisions.fields import FIELDS, Kind

MAX_LENGTH = 2000
MAX_SAMPLES = 2048
_SAMPLES: dict[Kind, tuple[Any, ...]] = {
    Kind.NUMBER: (0.0, 1e9, -1e9, 0.5),
    Kind.TEXT: ("", "x"),
}
_LIST_NAME = re.compile(r"""["']([^"'\\]*)["']\s+in\s+lists\b""")
_NULL = re.compile(r"\bnull\b")


class ConditionError(ValueError):
    """A condition that cannot be a rule; the message names the problem."""


@dataclass(frozen=True)
class Condition:
    text: str
    program: Any  # cel.Program
    fields: tuple[str, ...]  # what it reads
    reads_null: bool  # it tests for null itself: evaluated even when a field it reads is unknown

    def applies(self, values: dict[str, Any]) -> bool:
        """Whether it is evaluated on these values: not when a field it reads is unknown (null), unless it
        tests for null itself."""
        return self.reads_null or all(values.get(f) is not None for f in self.fields)

    def matches(self, values: dict[str, Any]) -> bool | None:
        """One evaluation outside the hot path (a test, a backtest row): None when it does not apply."""
        if not self.applies(values):
            return None
        context = cel.Context()
        context.update({f: values[f] for f in self.fields})
        return self.evaluate(context)

    def evaluate(self, context: Any) -> bool:
        """True or false on a context holding its fields (cel.Context); raises what CEL raises at run time
        (a division by zero, a type error that the samples did not reach)."""
        return self.program.execute(context) is True


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ")[0].strip().rstrip(".")


def _samples(fields: tuple[str, ...], named: list[str]) -> list[dict[str, Any]]:
    """Values for every combination of sample values of the fields read (a seeded draw when too many)."""
    choices = [
        ([], named or ["x"]) if FIELDS[name].kind is Kind.NAMES else _SAMPLES[FIELDS[name].kind] for name in fields
    ]
    total = 1
    for values in choices:
        total *= len(values)
    if total <= MAX_SAMPLES:
        combos: list[tuple[Any, ...]] = list(itertools.product(*choices))
    else:
        draw = random.Random(0)
        combos = [tuple(draw.choice(values) for values in choices) for _ in range(MAX_SAMPLES)]
    return [dict(zip(fields, combo, strict=True)) for combo in combos]


def compile_condition(text: str, lists: frozenset[str] = frozenset()) -> Condition:
    """A checked condition, or ConditionError saying what is wrong. `lists`: the list names that exist."""
    text = text.strip()
    if not text:
        raise ConditionError("the condition is empty")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the condition is longer than {MAX_LENGTH} characters")
    try:
        program = cel.compile(text)
    except ValueError as error:
        detail = str(error).split("ERROR: ", 1)[-1].replace("<input>:", "at line:column ")
        raise ConditionError(f"syntax error: {detail}") from None
    references = program.references()
    unknown = sorted(set(references["variables"]) - FIELDS.keys())
    if unknown:
        raise ConditionError(f"unknown field {unknown[0]!r}; a rule reads: {', '.join(FIELDS)} (see docs/decisions.md)")
    named = _LIST_NAME.findall(text)
    if missing := sorted(set(named) - lists):
        raise ConditionError(f"unknown list {missing[0]!r}; create it first (`fraudflow lists create`)")
    fields = tuple(sorted(references["variables"]))
    samples = _samples(fields, named)
    failures: list[Exception] = []
    for sample in samples:
        context = cel.Context()
        context.update(sample)
        try:
            result = program.execute(context)
        except TypeError as error:
            raise ConditionError(
                f"type error: {_first_sentence(error)} (CEL converts nothing: compare numbers with numbers, "
                "write 10.0 for a number in arithmetic, quote text)"
            ) from None
        except Exception as error:  # ZeroDivisionError, ValueError, RuntimeError: may depend on the values
            failures.append(error)
            continue
        if not isinstance(result, bool):
            raise ConditionError(f"a condition must be true or false; this one gives {type(result).__name__}")
    if len(failures) == len(samples):  # a failure whatever the values: the condition itself is wrong
        raise ConditionError(f"fails on every sample transaction: {_first_sentence(failures[0])}")
    return Condition(text, program, fields, bool(_NULL.search(text)))
