"""Calibration baselines: a constant reply and a random real civilian line.

They are not jokes: they show what a metric gives for free. Under the paper's smoothed sentence
BLEU a short constant reply scores surprisingly well (docs/metrics.md), and a random civilian
line from the training split sets the floor that a model must beat to show it listens.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

from pydantic import Field

from deescalwild.core import Reply
from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Options, Request, Responder, Timer


class ConstResponder(Responder):
    prefix = "const"
    description = "always says TEXT (calibration baseline), e.g. const:I don't know."

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None) -> None:
        if not arg.strip():
            raise DeescalwildError("const: needs the text to say, e.g. --responder "
                                   "\"const:I don't know.\"")
        super().__init__(arg, options, spec=spec)

    def respond(self, request: Request) -> Reply:
        return Timer().reply(self.arg, tokens=len(self.arg.split()))


class RandomOptions(Options):
    seed: int = Field(0, description="seed; with the request id it fixes each reply")
    train: Path | None = Field(None, description="corpus whose train-split civilian turns are "
                               "drawn from (set by `eval --train`)")


class RandomResponder(Responder):
    """A civilian line drawn at random from the training split's civilian turns. The draw depends
    only on the seed and the request id, so a rerun (or a cached resume) gives the same replies."""

    prefix = "random"
    description = "a random real civilian reply from the training split (calibration baseline)"
    Options = RandomOptions

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None, pool: list[str] | None = None) -> None:
        super().__init__(arg, options, spec=spec)
        if pool is None:
            if self.options.train is None:
                raise DeescalwildError("random: needs a training corpus (eval --train CORPUS, "
                                       "or random?train=CORPUS.jsonl)")
            from deescalwild.bench.cases import cases_from_corpus

            pool = [c.reference for c in cases_from_corpus(self.options.train, split="train")]
        if not pool:
            raise DeescalwildError("random: the training split has no civilian replies")
        self.pool = pool

    def respond(self, request: Request) -> Reply:
        t = Timer()
        key = zlib.crc32(f"{self.options.seed}\x00{request.id}".encode())
        text = random.Random(key).choice(self.pool)
        return t.reply(text, tokens=len(text.split()))

    def settings(self) -> dict:
        s = super().settings()
        s["train"] = str(self.options.train) if self.options.train else None
        s["pool_size"] = len(self.pool)
        return s
