"""A scenario as a two-party chat: the officer side is `user`, the civilian `assistant`.

The benchmark's cases, the retrieval index and the fine-tuning data all see an encounter this
way, so the rule lives in one place (docs/benchmark.md):

- officer turns are `user`; civilian turns are `assistant`;
- bystander and dispatcher turns are folded into the `user` side with a tag (`[bystander] ...`):
  the civilian hears them, and answers them too, but they are not the civilian's lines;
- narrator and unknown-role turns are left out: a channel host's voice-over is not part of the
  scene, and an unresolved speaker could be either side;
- turns the curation policy excluded are left out (`curate.policy.kept_turns`);
- consecutive turns of the same side are merged into one message, in order: rows of the same
  speaker label join with a space (one utterance split by the transcriber), different speakers
  with a newline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deescalwild.core import Role, Scenario
from deescalwild.curate.policy import kept_turns

SIDE: dict[Role, str | None] = {
    Role.OFFICER: "user",
    Role.CIVILIAN: "assistant",
    Role.BYSTANDER: "user",
    Role.DISPATCHER: "user",
    Role.NARRATOR: None,
    Role.UNKNOWN: None,
}
TAGGED = (Role.BYSTANDER, Role.DISPATCHER)


@dataclass(slots=True)
class Message:
    """One merged message, with where it came from in the scenario."""

    role: str  # "user" | "assistant"
    content: str
    turn_indices: list[int] = field(default_factory=list)
    has_officer: bool = False  # a user message that contains at least one officer turn
    last_speaker: str = ""

    def to_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def messages(scenario: Scenario) -> list[Message]:
    """The scenario's kept turns as alternating user/assistant messages (rule in the docstring)."""
    out: list[Message] = []
    for t in kept_turns(scenario):
        side = SIDE.get(t.role)
        text = " ".join(t.text.split())
        if side is None or not text:
            continue
        if t.role in TAGGED:
            text = f"[{t.role.value}] {text}"
        last = out[-1] if out else None
        if last is not None and last.role == side:
            sep = " " if t.speaker == last.last_speaker else "\n"
            last.content = f"{last.content}{sep}{text}"
        else:
            last = Message(side, text)
            out.append(last)
        last.turn_indices.append(t.index)
        last.last_speaker = t.speaker
        last.has_officer = last.has_officer or t.role is Role.OFFICER
    return out


def scene_context(scenario: Scenario) -> str:
    """What a responder may know before the conversation starts: where the video was posted, its
    public title, and the civilian's persona (`meta["civilian_persona"]`, a short description of
    the person, e.g. from the diarizer's voice description) when known. Never the transcript
    itself. Benchmark cases and fine-tuning examples both use it, so they cannot differ."""
    where = {"youtube": "YouTube", "tiktok": "TikTok", "facebook": "Facebook"}.get(
        (scenario.platform or "").lower(), scenario.platform or "")
    text = "A real police-civilian encounter"
    if where:
        text += f" from a video posted on {where}"
    title = str(scenario.meta.get("title") or "").strip()
    if title:
        text += f', titled "{title}"'
    text += "."
    persona = " ".join(str(scenario.meta.get("civilian_persona") or "").split())
    if persona:
        text += f" The civilian: {persona.rstrip('.')}."
    return text
