"""A stand-in relevance judge: an OpenAI-compatible server that labels transcripts with keyword
cues, and injects faults, so the relevance stage can be run at scale without a model or a key.

It is NOT a model and its verdicts are not a measurement of relevance: each feature is true
when the transcript (between the prompt's `<<<` and `>>>` markers) matches a few regular
expressions. What it measures is the pipeline: thousands of requests through the real OpenAI
SDK, the validation of every reply, corrections, retries with backoff, the cache, the report.

    python scripts/fake_relevance_judge.py --port 8765 --faults 429:0.03,500:0.02,malformed:0.03
    OPENAI_API_KEY=sk-fake deescalwild acquire run --stages relevance \\
        --judge 'openai:http://127.0.0.1:8765/v1#fake-judge'

Faults (chosen per request, seeded): `429` (with Retry-After: 0), `500`, `malformed` (a reply
that is not JSON), `partial` (JSON missing features), `truncated` (finish_reason "length",
JSON cut off), `drop` (the connection closed without an answer).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deescalwild.acquire.relevance.taxonomy import FEATURE_NAMES

# feature -> cue pattern (case-insensitive) in the transcript text
CUES: dict[str, str] = {
    "police_identified_by_role": r"\b(officer|deputy|sheriff|trooper|police|sergeant|cop)s?\b",
    "police_commands_present": r"\b(put your hands|hands up|get on the ground|step out|"
                               r"show me your hands|turn around|stop resisting|get out of the car|"
                               r"drop (it|the)|don't move)\b",
    "id_request_event": r"\b(license|id|identification|registration|date of birth|"
                        r"what's your name)\b",
    "legal_procedure_language": r"\b(under arrest|warrant|miranda|right to remain silent|"
                                r"citation|probable cause|detained|charge[sd]?)\b",
    "police_explaining_actions": r"\b(the reason i|i stopped you|i'm going to|because you|"
                                 r"what's going to happen)\b",
    "civilian_questioning_police": r"\b(why (are|did) you|what did i do|am i being detained|"
                                   r"what for)\b",
    "conversation_present": r"\?",
    "verbal_disagreement_detected": r"\b(no i didn't|that's not true|you're wrong|i didn't do|"
                                    r"that's bullshit|no way)\b",
    "compliance_discussion": r"\b(comply|cooperate|do what i say|listen to me|follow)\b",
    "instruction_clarification_dialogue": r"\b(what do you want me to|which one|"
                                          r"you mean|do you understand)\b",
    "negotiation_attempts": r"\b(can we|how about|if you|let me just|please just)\b",
    "conflict_resolution_attempt": r"\b(work this out|figure this out|let's talk|"
                                   r"we can fix|solve this)\b",
    "raised_threat_language": r"\b(i'll kill|i will kill|shoot you|tase|taser|beat your|"
                              r"gonna hurt)\b",
    "noncompliance_resistance_language": r"\b(i'm not|i won't|no i'm not|get off me|"
                                         r"let me go|i don't have to)\b",
    "accusatory_language": r"\b(you stole|you did this|liar|you're lying|racist|harass)\w*",
    "police_warning_language": r"\b(last warning|or you will|or i will|i'm warning you|"
                               r"if you don't)\b",
    "emotional_intensity_spike": r"(!{2,}|\b(fuck|shit|damn|screaming|crying)\w*)",
    "crowd_escalation_factors": r"\b(crowd|everybody|y'all|bystander|filming|record(ing)?)\b",
    "use_of_force_transition_signals": r"\b(taser|tase|cuff|handcuff|pepper spray|take him down|"
                                       r"shots fired|gun)\w*",
    "calming_language_used_by_officer": r"\b(calm down|relax|take a breath|it's okay|"
                                        r"you're okay|slow down)\b",
    "empathetic_statements": r"\b(i understand|i hear you|i know this is|i get it|"
                             r"i'm sorry)\b",
    "clear_explanations_given": r"\b(the reason|because|what's going to happen|here's what)\b",
    "tone_softening_cues": r"\b(sir|ma'am|please|thank you|buddy|my friend)\b",
    "conflict_deescalation_success": r"\b(thank you officer|have a good (day|night)|"
                                     r"you're free to go|drive safe)\b",
    "agreement_reached": r"\b(okay|alright|deal|sounds good|fair enough)\b",
    "no_police_presence": r"^(?!.*\b(officer|deputy|police|sheriff|trooper|cop)s?\b)",
    "no_conversation_detected": r"^(?!.*\?)",
    "advertisement_content_detected": r"\b(sponsor|promo code|use code|% off|subscribe)\b",
    "training_range_context": r"\b(training (exercise|scenario)|simulation|shooting range|"
                              r"role[- ]play)\b",
    "non_relevant_crime_only_context": r"\b(surveillance footage|cctv|security camera)\b",
}
_PATTERNS = {k: re.compile(v, re.IGNORECASE | re.DOTALL) for k, v in CUES.items()}


def label(text: str) -> dict[str, bool]:
    """The keyword verdicts for one transcript; a cue must match twice for the interaction,
    escalation and de-escalation groups (once is often incidental), once elsewhere."""
    out = {}
    for name in FEATURE_NAMES:
        hits = len(_PATTERNS[name].findall(text))
        once = name.startswith(("police_identified", "id_request", "no_", "advertisement",
                                "training", "non_relevant", "conversation_present"))
        out[name] = hits >= (1 if once else 2)
    return out


class Judge:
    def __init__(self, faults: dict[str, float], seed: int, delay_s: float) -> None:
        self.faults, self.rng, self.delay_s = faults, random.Random(seed), delay_s
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def pick(self) -> str | None:
        with self.lock:
            r = self.rng.random()
        acc = 0.0
        for fault, p in self.faults.items():
            acc += p
            if r < acc:
                return fault
        return None


def make_handler(judge: Judge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None
                  ) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": "fake-judge", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if judge.delay_s:
                time.sleep(judge.delay_s)
            fault = judge.pick()
            with judge.lock:
                judge.counts["requests"] += 1
                judge.counts[fault or "ok"] += 1
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if fault in ("429", "500"):
                self._send(int(fault), {"error": {"message": f"injected {fault}",
                                                  "type": "fake"}},
                           {"Retry-After": "0"} if fault == "429" else None)
                return
            user = next((m["content"] for m in reversed(body.get("messages", []))
                         if m.get("role") == "user" and "<<<" in str(m.get("content"))), "")
            m = re.search(r"<<<\n?(.*)\n?>>>", str(user), re.DOTALL)
            features = label(m.group(1) if m else "")
            finish = "stop"
            if fault == "malformed":
                text = "I think this video is relevant: lots of police talk."
            elif fault == "partial":
                text = json.dumps({"features": dict(list(features.items())[:12])})
            elif fault == "truncated":
                text, finish = json.dumps({"features": features})[:200], "length"
            else:
                text = json.dumps({"features": features})
            self._send(200, {
                "id": "fake", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake-judge"),
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": len(str(user)) // 4,
                          "completion_tokens": len(text) // 4,
                          "total_tokens": (len(str(user)) + len(text)) // 4}})

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--faults", default="", help="e.g. 429:0.03,500:0.02,malformed:0.03")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = ap.parse_args()
    faults = {k: float(v) for k, v in (f.split(":") for f in args.faults.split(",") if f)}
    judge = Judge(faults, args.seed, args.delay)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(judge))
    print(f"fake judge on http://127.0.0.1:{args.port}/v1 (faults {faults or 'none'})",
          flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps(dict(judge.counts)), flush=True)


if __name__ == "__main__":
    main()
