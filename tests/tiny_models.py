"""Tiny random chat models for tests: a re-export of `deescalwild.train.tiny` (which see), kept so
tests can `from tiny_models import build_tiny_model, ARCHS, sample_texts`, plus the requests the
responder tests send them."""

from __future__ import annotations

from deescalwild.responders.base import Request
from deescalwild.train.tiny import ARCHS, build_tiny_model, sample_texts

__all__ = ["ARCHS", "build_tiny_model", "sample_texts", "traffic_stop_request"]


def traffic_stop_request(i: int, turns: int = 1) -> Request:
    """Request `i`: a traffic stop whose history has `turns` officer lines (ids `case-I`)."""
    lines = ["Sir, license and registration please.", "Why? What did I do?",
             "You were going fifty in a thirty.", "No way, I was not.",
             "Step out of the car for me.", "Okay, okay. I'm getting out."]
    history = [{"role": "user" if k % 2 == 0 else "assistant",
                "content": f"{lines[k % 6]} ({i}.{k})"} for k in range(2 * turns - 1)]
    return Request(context=f"Traffic stop number {i} on a highway at night.", history=history,
                   id=f"case-{i}")
