"""Simulator errors a client can cause, each with the HTTP status the web API answers with; the
terminal prints their message. All are `DeescalwildError`s (one clear line, no traceback)."""

from __future__ import annotations

from deescalwild.errors import DeescalwildError


class SimError(DeescalwildError):
    status = 400


class NotFound(SimError):
    """Unknown card or session."""

    status = 404


class SessionEnded(SimError):
    """A turn on a session that has ended."""

    status = 409


class BadTurn(SimError):
    """An empty or oversized trainee turn."""

    status = 422


class RateLimited(SimError):
    status = 429
