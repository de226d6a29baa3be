"""Chat examples -> token ids and a loss mask that covers exactly the civilian's replies.

TRL's `assistant_only_loss` needs `{% generation %}` markers in the chat template; the official
templates of Qwen2.5, Llama 3.2, Granite 3, Phi-4-mini and Mistral have none, and TRL patches
only some families. This works for any template instead: the conversation is rendered prefix
by prefix, and an assistant message's span is the text between the render of everything before
it (with the generation prompt) and the render that includes it. That span is the reply and its
end-of-turn token, which is what the model must learn to produce and to stop. It relies on one
property of the template, checked on every example: each render is a prefix of the next. A
template without it (Mistral's v3 templates move the system prompt to the last user turn) is
retried with the system prompt folded into the first user turn, which every template keeps in
place; one that fails both cannot express the roles and is refused before training starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deescalwild.errors import DeescalwildError
from deescalwild.responders.prompt import template_takes_system, with_system


class TemplateError(DeescalwildError):
    """The chat template cannot express a system/user/assistant conversation as needed."""


@dataclass(slots=True)
class Encoded:
    input_ids: list[int]
    assistant_masks: list[int]  # 1 = this token is in the loss
    message_ends: list[int]  # token index where each chat message (after folding) ends
    spans: list[tuple[int, int]]  # character spans of the trained replies in `text`
    text: str


def _render(tokenizer: Any, msgs: Sequence[dict[str, Any]], gen: bool) -> str:
    chat = [{"role": m["role"], "content": m["content"]} for m in msgs]
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen)


def fold(msgs: Sequence[dict[str, Any]], system_role: bool) -> list[dict[str, Any]]:
    """An SFT example's messages in the shape the model is prompted with at inference (the
    `train` flags kept): the system message in its own role, or folded into the first user
    turn, by the same function the responders use."""
    if msgs and msgs[0]["role"] == "system":
        return with_system(msgs[0]["content"], list(msgs[1:]), system_role)
    return list(msgs)


def encode(tokenizer: Any, msgs: Sequence[dict[str, Any]], system_role: bool) -> Encoded:
    """Render `msgs` (system first, then alternating user/assistant) through the tokenizer's chat
    template and mark the tokens of every assistant message whose `train` is not false."""
    chat = fold(msgs, system_role)
    full = _render(tokenizer, chat, gen=False)
    # the same conversation followed by one more officer line: where each message ends when
    # more follows (Phi-4's template closes a conversation with a document-end token that is
    # not there when the conversation goes on)
    extended = _render(tokenizer, [*chat, {"role": "user", "content": "..."}], gen=False)
    specials = sorted(getattr(tokenizer, "all_special_tokens", []) or [], key=len, reverse=True)
    spans: list[tuple[int, int]] = []
    bounds: list[int] = []  # character end of each message in `full`
    for k, m in enumerate(chat):
        after = _render(tokenizer, chat[: k + 1], gen=False)
        end = _shared_end(after, extended, specials)
        if end is None or full[:end] != extended[:end]:
            raise TemplateError("the chat template renders an earlier message differently once "
                                f"later ones follow (message {k}, role {m['role']})")
        bounds.append(end)
        if m["role"] != "assistant" or m.get("train") is False:
            continue
        prompt = _render(tokenizer, chat[:k], gen=True)
        if not extended.startswith(prompt) or len(prompt) > end:
            raise TemplateError(f"the generation prompt is not where assistant message {k} "
                                "starts in the rendered conversation")
        start, stop = len(prompt), len(after[:end].rstrip())
        if m["content"].strip() and m["content"].strip() not in full[start:stop]:
            raise TemplateError(f"assistant message {k} does not appear in its own span")
        spans.append((start, stop))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = [0] * len(ids)
    j = 0
    for i, (a, b) in enumerate(offsets):
        while j < len(spans) and a >= spans[j][1]:
            j += 1
        if j < len(spans) and spans[j][0] <= a < spans[j][1] and b > a:
            mask[i] = 1
    ends, i = [], 0
    for bound in bounds:
        while i < len(offsets) and offsets[i][0] < bound:
            i += 1
        ends.append(i)
    return Encoded(ids, mask, ends, spans, full)


def _shared_end(after: str, extended: str, specials: list[str]) -> int | None:
    """How much of `after` (a conversation rendered up to a message) is also the start of the
    extended conversation: all of it, or all but a tail of special tokens and whitespace that
    only closes a finished conversation. None when the two really differ."""
    if extended.startswith(after):
        return len(after)
    n = len(os.path.commonprefix([after, extended]))  # noqa: RUF071 (characters are meant)
    longest = max((len(t) for t in specials), default=0)
    for cut in range(n, max(-1, n - longest - 1), -1):  # the common part may end inside a token
        tail = after[cut:]
        while tail:
            tail = tail.lstrip()
            hit = next((t for t in specials if t and tail.startswith(t)), None)
            if hit is None:
                break
            tail = tail[len(hit):]
        if not tail:
            return cut
    return None


def probe(tokenizer: Any, system_role: bool | str = "auto") -> bool:
    """Decide (and check) how the system prompt is sent: returns `system_role` to use.

    Raises `TemplateError`, before any training, when the tokenizer has no chat template or its
    template cannot give a reply and its end-of-turn a span of their own in either shape."""
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat template: fine-tuning needs an "
                            "instruct/chat model (or a chat_template in tokenizer_config.json)")
    sample = [{"role": "system", "content": "SYSTEM-PROBE"},
              {"role": "user", "content": "USER-ONE"},
              {"role": "assistant", "content": "REPLY-ONE"},
              {"role": "user", "content": "USER-TWO"},
              {"role": "assistant", "content": "REPLY-TWO"}]
    shapes = [template_takes_system(tokenizer)] if system_role == "auto" else [bool(system_role)]
    if shapes[0]:
        shapes.append(False)  # a template that drops or moves the system prompt: fold it
    errors = []
    for shape in shapes:
        try:
            enc = encode(tokenizer, sample, shape)
        except TemplateError as e:
            errors.append(str(e))
            continue
        except Exception as e:  # the template raised (e.g. roles that must alternate)
            errors.append(f"the template refused the conversation: {e}")
            continue
        if "SYSTEM-PROBE" not in enc.text:
            errors.append("the template dropped the system prompt")
            continue
        trained = [enc.text[a:b] for a, b in enc.spans]
        if any("USER" in t for t in trained):
            errors.append("a user message fell inside an assistant span")
            continue
        return shape
    raise TemplateError("the chat template cannot express a civilian (assistant) / officer "
                        f"(user) conversation: {'; '.join(errors)}")
