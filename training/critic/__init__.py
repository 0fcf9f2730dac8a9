"""The critic: SOUL.md's rules as plain, explicit checks on assistant turns.

    critique(conversation_or_message, context=None) -> list[Violation(rule, message)]

Each rule id is a `### \\`id\\`` heading in SOUL.md (tests/test_soul.py keeps the two in sync) and one
function here. The checks are deliberately simple (word lists and regular expressions over the turn's
prose, tool calls and tool results) so that what a violation means is obvious from reading the
function; the synthetic-data pipeline relies on them to reject seeded bad drafts and accept revisions,
and `nanocode eval soul` reports the share of turns that pass each one.

What a check sees (`Turn`): the assistant message's parts, the user request it answers, the messages
before it, and optionally the files the task may change (`allowed_paths`). A conversation is checked
turn by turn, each assistant message against the user message before it.
"""
from dataclasses import dataclass
from typing import Callable

from nanocode.template import assistant_parts
from training.critic.conduct import (check_admits_uncertainty, check_explains_tool_use, check_graceful_rejection,
                                     check_grounded, check_no_extra_work, check_well_formed_calls,
                                     is_question_only)
from training.critic.turn import COMMON_WORDS, Turn, Violation
from training.critic.voice import check_concise, check_friendly, check_lowercase, check_no_shouting, \
    check_no_sycophancy

__all__ = ["COMMON_WORDS", "RULES", "Rule", "Turn", "Violation", "check_turn", "critique", "is_question_only",
           "pass_rates", "turns"]


@dataclass(frozen=True)
class Rule:
    id: str
    check: Callable[[Turn], list[str]]


RULES: dict[str, Rule] = {r.id: r for r in [
    Rule("lowercase", check_lowercase),
    Rule("no_shouting", check_no_shouting),
    Rule("no_sycophancy", check_no_sycophancy),
    Rule("concise", check_concise),
    Rule("friendly", check_friendly),
    Rule("explains_tool_use", check_explains_tool_use),
    Rule("well_formed_calls", check_well_formed_calls),
    Rule("no_extra_work", check_no_extra_work),
    Rule("graceful_rejection", check_graceful_rejection),
    Rule("admits_uncertainty", check_admits_uncertainty),
    Rule("grounded", check_grounded),
]}


# --- entry points ---------------------------------------------------------------------------------

def check_turn(turn: Turn, rules: list[str] | None = None) -> list[Violation]:
    out = []
    for rid in rules or RULES:
        if rid not in RULES:
            raise KeyError(f"unknown rule {rid!r}; the rules are {', '.join(RULES)}")
        out += [Violation(rid, msg) for msg in RULES[rid].check(turn)]
    return out


def turns(messages: list[dict], allowed_paths=None) -> list[Turn]:
    """One Turn per assistant message, each with the user request before it and the history."""
    out, request = [], ""
    allowed = frozenset(allowed_paths) if allowed_paths is not None else None
    for i, m in enumerate(messages):
        if m["role"] == "user":
            request = str(m["content"])
        elif m["role"] == "assistant":
            out.append(Turn(assistant_parts(m), request, messages[:i], allowed))
        else:
            raise ValueError(f"unknown role {m['role']!r}; expected 'user' or 'assistant'")
    return out


def critique(item, context: dict | None = None, rules: list[str] | None = None) -> list[Violation]:
    """Violations of SOUL.md in a conversation ({"messages": [...]} or a list of messages) or in one
    assistant message. `context` (all optional): request (the user message a lone assistant message
    answers), history (messages before it), allowed_paths (files the task may edit), finished (False for
    a turn still in progress). A conversation's "meta" dict may also carry allowed_paths."""
    context = dict(context or {})
    if isinstance(item, dict) and "messages" in item:
        context.setdefault("allowed_paths", (item.get("meta") or {}).get("allowed_paths"))
        item = item["messages"]
    if isinstance(item, list):
        out = []
        for turn in turns(item, context.get("allowed_paths")):
            out += check_turn(turn, rules)
        return out
    if isinstance(item, dict) and item.get("role") == "assistant":
        allowed = context.get("allowed_paths")
        turn = Turn(assistant_parts(item), str(context.get("request", "")), list(context.get("history", [])),
                    frozenset(allowed) if allowed is not None else None, bool(context.get("finished", True)))
        return check_turn(turn, rules)
    raise TypeError("critique() takes a conversation ({'messages': [...]}), a list of messages, or one "
                    "assistant message ({'role': 'assistant', 'content': ...})")


def pass_rates(conversations: list) -> dict[str, float]:
    """Share of assistant turns that keep each rule, over many conversations (for `nanocode eval soul`)."""
    kept = {rid: 0 for rid in RULES}
    n = 0
    for conv in conversations:
        msgs = conv["messages"] if isinstance(conv, dict) else conv
        allowed = (conv.get("meta") or {}).get("allowed_paths") if isinstance(conv, dict) else None
        for turn in turns(msgs, allowed):
            n += 1
            broken = {v.rule for v in check_turn(turn)}
            for rid in RULES:
                kept[rid] += rid not in broken
    return {rid: (k / n if n else float("nan")) for rid, k in kept.items()}
