"""The chat prompt every LLM backend sends: one system message that casts the model as the
civilian, then the conversation. One place, so hf, openai, gemini (and the fine-tuning data,
which must match it) cannot drift apart."""

from __future__ import annotations

from typing import Any

from deescalwild.responders.base import Message, Request

SYSTEM_PROMPT = (
    "You are the civilian in a real police encounter. Reply as that person would, in their own "
    "words: one turn of speech, no narration, no stage directions, no speaker labels."
)


def system_prompt(context: str, extra: str = "") -> str:
    """The system message for a scene: the role, the scene's context, and any extra state (the
    simulator adds the civilian's current agitation)."""
    parts = [SYSTEM_PROMPT]
    if context.strip():
        parts.append(f"Scene: {context.strip()}")
    if extra.strip():
        parts.append(extra.strip())
    return "\n\n".join(parts)


def chat_messages(request: Request, system_role: bool = True) -> list[Message]:
    """`[{"role": "system"}, ...history]`; the system text is the civilian's (`system_prompt`)
    unless `request.extra["system"]` replaces it. Families without a system role (Gemma) get
    the system text folded into the first user turn instead (`system_role=False`).

    The history is made to start with a `user` message (leading civilian lines are dropped):
    strict chat templates (Mistral, Gemma) refuse a conversation that opens with the assistant,
    and a trimmed or windowed history can."""
    # a caller that is not asking for the civilian (the simulator's LLM judge) brings its own
    system = request.extra.get("system") or system_prompt(request.context,
                                                          str(request.extra.get("state", "")))
    history = [dict(m) for m in request.history]
    while history and history[0]["role"] == "assistant":
        history.pop(0)
    return with_system(system, history, system_role)


def with_system(system: str, history: list[dict], system_role: bool = True) -> list[dict]:
    """The system text as its own message, or folded into the first user turn (which is copied,
    not changed in place). Fine-tuning data goes through here too, so a model is trained on
    exactly the prompt shape it is later asked with."""
    history = list(history)
    if system_role:
        return [{"role": "system", "content": system}, *history]
    if history and history[0]["role"] == "user":
        history[0] = {**history[0], "content": f"{system}\n\n{history[0]['content']}"}
        return history
    return [{"role": "user", "content": system}, *history]


_PROBE = "deescalwild-system-probe"


def template_takes_system(render: Any) -> bool:
    """Whether a chat template renders a system message (Gemma's raises, some silently drop
    it): only then is the system prompt sent in its own role. `render(messages) -> str` renders
    with the generation prompt, or is a transformers tokenizer (its `apply_chat_template`)."""
    if hasattr(render, "apply_chat_template"):
        tokenizer = render

        def render(msgs: list[dict]) -> str:
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    probe = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}]
    try:
        return _PROBE in render(probe)
    except Exception:
        return False
