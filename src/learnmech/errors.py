"""Errors that describe bad input: the CLI prints their message as one line and exits 2."""

from __future__ import annotations

__all__ = ["ConfigError", "UserError"]


class UserError(Exception):
    """Bad input from the user (a value, a file, a name): the message says what and why."""


class ConfigError(UserError, ValueError):
    """A study configuration failed validation."""
