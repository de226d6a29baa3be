"""Tiny random chat models for tests: a re-export of `deescalwild.train.tiny` (which see), kept so
tests can `from tiny_models import build_tiny_model, ARCHS, sample_texts`."""

from __future__ import annotations

from deescalwild.train.tiny import ARCHS, build_tiny_model, sample_texts

__all__ = ["ARCHS", "build_tiny_model", "sample_texts"]
