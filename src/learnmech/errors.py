"""Errors that describe bad input: the CLI prints their message as one line and exits 2."""

from __future__ import annotations

__all__ = ["ConfigError", "RunInterrupted", "UserError"]


class UserError(ValueError):
    """Bad input from the user (a value, a file, a name): the message says what and why.

    A :class:`ValueError`, so ``theory`` and ``measure`` functions can raise it for bad
    values and callers catching ``ValueError`` still see it."""


class ConfigError(UserError):
    """A study configuration failed validation."""


class RunInterrupted(RuntimeError):
    """The run stopped before its sweep finished for a reason outside the user's input (a
    worker process killed, or out of memory): finished trials are saved and the same
    command resumes. The CLI prints the message as one line and exits 1."""
