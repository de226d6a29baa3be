"""Supervised fine-tuning examples: each scenario as chat windows that fit a token budget.

The reference scripts truncated whole conversations at 2,048 tokens, so most of every long
encounter never reached the model. Here a conversation is cut into overlapping windows instead:
each window is a system prompt plus consecutive exchanges (officer side `user`, civilian
`assistant`, by the rule in `deescalwild.dialogue`), and every civilian message is a training
target in exactly one window. The exchanges a window repeats from the previous one are context
only: their assistant messages carry `"train": false`, so no reply is learned twice.

The budget is counted with a tokenizer when one is given (`--tokenizer`), else estimated from
characters (conservatively: ~3.5 characters per token plus a per-message overhead). `train`
counts again with the model's own tokenizer and re-windows any example that does not fit, so an
estimate that is off never truncates a conversation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from deescalwild.atomic import atomic_write
from deescalwild.core import Scenario, read_corpus, read_json_lines
from deescalwild.curate.policy import is_excluded
from deescalwild.dialogue import messages, scene_context
from deescalwild.errors import InputError
from deescalwild.responders.prompt import system_prompt

SFT_SCHEMA = "deescalwild.sft/1"
DEFAULT_MAX_TOKENS = 2048  # the paper's training length
DEFAULT_SPLITS = ("train", "dev")  # the test split is never written: it is the benchmark's
CHARS_PER_TOKEN = 3.5  # English speech in 100k+ vocabularies runs ~4; 3.5 leaves room
MESSAGE_OVERHEAD = 8  # role header and end-of-turn tokens of one message, generously

TokenCount = Callable[[str], int]  # tokens of one message's text


def estimate_tokens(text: str) -> int:
    """Tokens of one message, estimated from characters (no tokenizer needed)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD


def tokenizer_counter(tokenizer: Any) -> TokenCount:
    """Tokens of one message counted with `tokenizer`, plus the message overhead."""
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + MESSAGE_OVERHEAD
    return count


@dataclass(slots=True)
class Window:
    """Exchanges `[start, end)` of a conversation; exchanges from `train_from` on are targets."""

    start: int
    end: int
    train_from: int
    oversize: bool = False  # a single exchange longer than the budget on its own


def plan_windows(costs: Sequence[int], budget: int, overlap: int) -> list[Window]:
    """Cut exchanges of the given token costs into windows of at most `budget` tokens.

    Each window starts with up to `overlap` tokens of exchanges already trained (context), then
    adds new exchanges while they fit. Every exchange is a target in exactly one window; one
    that alone exceeds the budget gets a window of its own, marked oversize.
    """
    out: list[Window] = []
    t, n = 0, len(costs)
    while t < n:
        s, ctx = t, 0
        while s > 0 and ctx + costs[s - 1] <= overlap and ctx + costs[s - 1] + costs[t] <= budget:
            s -= 1
            ctx += costs[s]
        total, e = ctx + costs[t], t + 1
        while e < n and total + costs[e] <= budget:
            total += costs[e]
            e += 1
        out.append(Window(s, e, t, oversize=costs[t] > budget))
        t = e
    return out


def exchanges(chat: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(user, assistant) pairs of an alternating conversation that opens with `user`; a trailing
    user message (nothing answers it) is not an exchange."""
    return [(chat[i], chat[i + 1]) for i in range(0, len(chat) - 1, 2)]


def windowed(system: str, pairs: Sequence[tuple[dict, dict]], costs: Sequence[int], budget: int,
             overlap: int) -> Iterator[tuple[Window, list[dict[str, Any]]]]:
    """Each window of `pairs` as chat messages: system first, context replies `train: false`.
    A pair whose assistant message was already `train: false` stays so."""
    for w in plan_windows(costs, budget, overlap):
        msgs: list[dict[str, Any]] = [{"role": "system", "content": system}]
        for k in range(w.start, w.end):
            user, reply = pairs[k]
            msgs.append({"role": "user", "content": user["content"]})
            target = k >= w.train_from and reply.get("train", True)
            msgs.append({"role": "assistant", "content": reply["content"],
                         **({} if target else {"train": False})})
        yield w, msgs


@dataclass
class SFTSummary:
    """What `make_sft` wrote and what it left out, with why."""

    examples: Counter = field(default_factory=Counter)  # per split
    scenarios: Counter = field(default_factory=Counter)  # per split, with >= 1 example
    targets: Counter = field(default_factory=Counter)  # trained civilian messages per split
    windowed_scenarios: int = 0  # scenarios cut into more than one window
    oversize: int = 0  # exchanges longer than the budget alone (train re-checks them)
    excluded: int = 0  # scenarios the curation policy left out
    no_exchange: int = 0  # kept scenarios without a civilian reply
    leading_civilian: int = 0  # civilian lines before any other speech (nothing to answer)
    other_splits: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"examples": dict(self.examples), "scenarios": dict(self.scenarios),
                "targets": dict(self.targets), "windowed_scenarios": self.windowed_scenarios,
                "oversize": self.oversize, "excluded": self.excluded,
                "no_exchange": self.no_exchange, "leading_civilian": self.leading_civilian,
                "other_splits": dict(self.other_splits)}


def scenario_examples(scenario: Scenario, max_tokens: int = DEFAULT_MAX_TOKENS,
                      count: TokenCount = estimate_tokens, overlap: int | None = None,
                      summary: SFTSummary | None = None) -> Iterator[dict[str, Any]]:
    """The SFT records of one scenario (none when curation excluded it)."""
    s = summary if summary is not None else SFTSummary()
    if is_excluded(scenario):
        s.excluded += 1
        return
    chat = [m.to_chat() for m in messages(scenario)]
    while chat and chat[0]["role"] == "assistant":
        chat.pop(0)
        s.leading_civilian += 1
    pairs = exchanges(chat)
    if not pairs:
        s.no_exchange += 1
        return
    system = system_prompt(scene_context(scenario))
    budget = max(1, max_tokens - count(system))
    costs = [count(u["content"]) + count(a["content"]) for u, a in pairs]
    plan = list(windowed(system, pairs, costs, budget,
                         budget // 4 if overlap is None else overlap))
    split = scenario.split or "none"
    s.scenarios[split] += 1
    s.windowed_scenarios += len(plan) > 1
    for i, (w, msgs) in enumerate(plan):
        s.oversize += w.oversize
        s.examples[split] += 1
        s.targets[split] += w.end - w.train_from
        yield {"schema": SFT_SCHEMA, "id": f"{scenario.id}#w{i}", "scenario_id": scenario.id,
               "split": scenario.split, "messages": msgs,
               "meta": {"window": i, "windows": len(plan), "exchanges": [w.start, w.end],
                        "train_from": w.train_from, "est_tokens": count(system) + sum(
                            costs[w.start:w.end]), "oversize": w.oversize,
                        "platform": scenario.platform}}


def make_sft(split_path: str | Path, out: str | Path, splits: Iterable[str] = DEFAULT_SPLITS,
             max_tokens: int = DEFAULT_MAX_TOKENS, count: TokenCount = estimate_tokens,
             overlap: int | None = None) -> SFTSummary:
    """Write the SFT examples of `splits` of a split corpus to `out` (JSON Lines, atomically)."""
    wanted = set(splits)
    if "test" in wanted:
        raise InputError(split_path, None, "the test split is the benchmark's; SFT examples "
                         "are made from train and dev only")
    summary = SFTSummary()
    with atomic_write(out, "wb") as fh:
        for sc in read_corpus(split_path):
            if sc.split not in wanted:
                summary.other_splits[sc.split or "none"] += 1
                continue
            for rec in scenario_examples(sc, max_tokens, count, overlap, summary):
                fh.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
    if not summary.targets:
        Path(out).unlink(missing_ok=True)
        raise InputError(split_path, None, f"no civilian replies in splits {sorted(wanted)}: "
                         "nothing to train on (was the corpus split? see `deescalwild split`)")
    return summary


def read_sft(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The records of an SFT file (of one split), validated: alternating user/assistant
    messages after an optional system message, at least one trained assistant message in the
    file. A bad record names the file and line."""
    out: list[dict[str, Any]] = []
    trained = 0
    for lineno, rec in read_json_lines(path, "SFT example"):
        msgs = rec.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise InputError(path, lineno, "expected a non-empty 'messages' list")
        body = msgs[1:] if msgs[0].get("role") == "system" else msgs
        for k, m in enumerate(body):
            want = "user" if k % 2 == 0 else "assistant"
            if not isinstance(m, dict) or m.get("role") != want or \
                    not isinstance(m.get("content"), str):
                raise InputError(path, lineno, f"message {k + len(msgs) - len(body)}: expected "
                                 f"role {want!r} with string content (user/assistant alternate, "
                                 "opening with user)")
        if split is not None and rec.get("split") != split:
            continue
        trained += sum(1 for m in body if m["role"] == "assistant" and m.get("train", True))
        out.append(rec)
    if split is None and not trained:
        raise InputError(path, None, "no assistant (civilian) turns to train on: every example "
                         "lacks a trained assistant message")
    return out

