"""The chat prompt every LLM backend sends: one system message that casts the model as the
civilian, then the conversation. One place, so hf, openai, gemini (and the fine-tuning data,
which must match it) cannot drift apart."""

from __future__ import annotations

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
    """`[{"role": "system"}, ...history]`. Families without a system role (Gemma) get the system
    text folded into the first user turn instead (`system_role=False`).

    The history is made to start with a `user` message (leading civilian lines are dropped):
    strict chat templates (Mistral, Gemma) refuse a conversation that opens with the assistant,
    and a trimmed or windowed history can."""
    system = system_prompt(request.context, str(request.extra.get("state", "")))
    history = [dict(m) for m in request.history]
    while history and history[0]["role"] == "assistant":
        history.pop(0)
    if system_role:
        return [{"role": "system", "content": system}, *history]
    if history and history[0]["role"] == "user":
        history[0]["content"] = f"{system}\n\n{history[0]['content']}"
        return history
    return [{"role": "user", "content": system}, *history]
