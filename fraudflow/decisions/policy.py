"""The decision order, as in Stripe Radar: allow lists, deny lists, rules (decline, then review, then allow),
then the model's own decision. Every verdict says what decided it and why.

A Policy is immutable: a change builds a new one and swaps it in, so a transaction sees one version whole.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cel

from fraudflow.decisions.conditions import Condition
from fraudflow.decisions.lists import EntityKind, ListAction, ListIndex


class RuleAction(enum.StrEnum):
    DECLINE = "decline"
    REVIEW = "review"
    ALLOW = "allow"


# What each action makes of the transaction (allow approves, whatever the model says).
OUTCOME = {RuleAction.DECLINE: "decline", RuleAction.REVIEW: "review", RuleAction.ALLOW: "approve"}


@dataclass(frozen=True)
class Rule:
    name: str
    version: int
    action: RuleAction
    condition: Condition
    description: str = ""


@dataclass
class Verdict:
    decision: str  # approve, review or decline
    decided_by: str  # allow_list, deny_list, rule or model
    reasons: list[dict[str, Any]]
    failed_rules: list[str] = field(default_factory=list)  # raised at run time: skipped
    unevaluated_rules: list[str] = field(default_factory=list)  # read a field unknown for this transaction


def _list_reason(index: ListIndex, kind: EntityKind, value: str, note: str | None) -> dict[str, Any]:
    return {
        "source": f"{index.info.action.value}_list",
        "list_name": index.info.name,
        "matched": f"{kind.value} {value}",
        "text": f"{kind.value} {value} is on the {index.info.action.value} list {index.info.name}"
        + (f": {note}" if note else ""),
    }


class Policy:
    def __init__(self, lists: Iterable[ListIndex] = (), rules: Iterable[Rule] = (), revision: int = 0) -> None:
        self.lists = {index.info.name: index for index in lists}
        self.rules = sorted(rules, key=lambda r: list(RuleAction).index(r.action))  # stable: creation order kept
        self.revision = revision
        self.fields = frozenset(name for rule in self.rules for name in rule.condition.fields)
        self.active = bool(self.rules or self.lists)

    def lists_of(self, identities: dict[EntityKind, str | None], now: float) -> list[tuple[ListIndex, str, Any]]:
        """The lists holding one of the transaction's identities, with the value and its entry."""
        found = []
        for index in self.lists.values():
            value = identities.get(index.info.kind)
            if value is not None and (entry := index.find(value, now)) is not None:
                found.append((index, value, entry))
        return found

    def decide(
        self, values: dict[str, Any], identities: dict[EntityKind, str | None], model: dict[str, Any], now: float
    ) -> Verdict:
        """`values`: the fields rules read (fields.FIELDS, without `lists`); `model`: the model's reason (its
        decision under "decision")."""
        listed = self.lists_of(identities, now) if self.lists else []
        for action, decision in ((ListAction.ALLOW, "approve"), (ListAction.DENY, "decline")):
            for index, value, entry in listed:
                if index.info.action is action:
                    reason = _list_reason(index, index.info.kind, value, entry.reason)
                    return Verdict(decision, f"{action.value}_list", [reason, model])
        verdict = Verdict(model["decision"], "model", [model])
        if not self.rules:
            return verdict
        context = cel.Context()
        context.update({name: values[name] for name in self.fields if name != "lists"})
        if "lists" in self.fields:
            context.update({"lists": [index.info.name for index, _, _ in listed]})
        unknown = {name for name in self.fields if values.get(name, ()) is None}  # `lists` is never null
        for rule in self.rules:
            condition = rule.condition
            if unknown and not condition.reads_null and not unknown.isdisjoint(condition.fields):
                verdict.unevaluated_rules.append(rule.name)
                continue
            try:
                matched = condition.evaluate(context)
            except Exception:  # a run-time failure (division by zero, ...) skips the rule, never the payment
                verdict.failed_rules.append(rule.name)
                continue
            if matched:
                verdict.decision = OUTCOME[rule.action]
                verdict.decided_by = "rule"
                rule_reason = {
                    "source": "rule",
                    "rule": rule.name,
                    "version": rule.version,
                    "action": rule.action.value,
                    "text": f"rule {rule.name} (v{rule.version}, {rule.action.value}): "
                    + (rule.description or condition.text),
                }
                verdict.reasons.insert(0, rule_reason)
                return verdict
        return verdict
