"""An LLM civilian and an LLM judge in the simulator, end to end through the real OpenAI SDK
against a local fake server: what the model is told (scene, persona, current agitation), that
the reply streams, and that the judge is asked as a grader, not as the civilian."""

from __future__ import annotations

import json
import re

from fake_llm_servers import FakeOpenAIServer, Say

from deescalwild.responders.prompt import SYSTEM_PROMPT
from deescalwild.responders.registry import load_responder
from deescalwild.sim.cards import CardLibrary
from deescalwild.sim.engine import Simulator
from deescalwild.sim.judge import JUDGE_SYSTEM
from deescalwild.sim.tactics import load_analyser

CARD = "mental-health-laundromat"


def test_an_llm_civilian_is_told_the_scene_and_the_agitation_the_turn_caused():
    library = CardLibrary.load()
    card = library.get(CARD)
    with FakeOpenAIServer() as srv:
        srv.queue(Say("Okay. Okay, I hear you.", pieces=["Okay. ", "Okay, ", "I hear you."]),
                  Say("Get away from me!"))
        sim = Simulator(library, load_responder(f"openai:{srv.url}#fake-model?stream=true"),
                        load_analyser("rules"))
        rec = sim.start(card.id)
        events = list(sim.stream_turn(rec.id, "Hi, I'm Officer Lee. Take your time. What's "
                                              "going on tonight?"))
        deltas = [e["text"] for e in events if e["type"] == "delta"]
        assert deltas == ["Okay. ", "Okay, ", "I hear you."]  # streamed as the model sent it
        calm = sim.get(rec.id).turns[0]
        threat = sim.turn(rec.id, "GET DOWN NOW or you're going to jail!")
        bodies = [r.body for r in srv.posts()]
    assert calm.reply == "Okay. Okay, I hear you." and threat.reply == "Get away from me!"
    assert calm.agitation_after < card.agitation_start < threat.agitation_after
    for body, turn in zip(bodies, (calm, threat)):
        system = body["messages"][0]
        assert system["role"] == "system" and system["content"].startswith(SYSTEM_PROMPT)
        assert card.context() in system["content"]
        said = re.search(r"agitation right now is (\d+)/100", system["content"])
        assert said and int(said.group(1)) == round(turn.agitation_after)
    # the second request carries the whole conversation, the card's opening line first
    roles = [m["role"] for m in bodies[1]["messages"][1:]]
    assert roles[-3:] == ["user", "assistant", "user"]
    assert bodies[1]["messages"][-1]["content"] == "GET DOWN NOW or you're going to jail!"


def test_the_llm_judge_grades_with_its_own_system_prompt_and_only_verifiable_evidence():
    library = CardLibrary.load()
    text = "I get why you'd be scared of us. Want to sit down?"
    answer = {"verdicts": [{"tactic": "empathy", "evidence": ["I get why you'd be scared"]},
                           {"tactic": "offering_choices", "evidence": ["Want to sit down?"]},
                           {"tactic": "threat", "evidence": ["words the trainee never said"]}]}
    with FakeOpenAIServer() as judge_srv, FakeOpenAIServer(Say("Maybe.")) as civ:
        judge_srv.queue(Say(json.dumps(answer)))
        sim = Simulator(library, load_responder(f"openai:{civ.url}#civilian"),
                        load_analyser(f"judge:openai:{judge_srv.url}#judge"))
        rec = sim.start(CARD)
        turn = sim.turn(rec.id, text)
        asked = judge_srv.posts()[0].body["messages"]
    assert asked[0] == {"role": "system", "content": JUDGE_SYSTEM}
    assert text in asked[-1]["content"]
    got = {v.tactic: v for v in turn.verdicts if v.source != "persona"}
    assert set(got) == {"empathy", "offering_choices"}  # the invented quote is dropped
    # the card's own trigger phrases are matched by the rules, whoever judges
    assert all(v.tactic.startswith("persona_") for v in turn.verdicts if v.source == "persona")
    a, b = got["empathy"].spans[0]
    assert text[a:b] == "I get why you'd be scared"
    assert got["empathy"].source.startswith("judge:")
    assert turn.agitation_after < turn.agitation_before
