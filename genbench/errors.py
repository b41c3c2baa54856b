"""Errors that the CLI turns into one-line messages and exit codes.

``UsageError`` (exit 2): the user's input is wrong; the message names the problem and the fix.
``RunFailure`` (exit 1): the run itself failed (a model diverged, a disk filled up, ...).
"""

from __future__ import annotations


class GenbenchError(Exception):
    """Base class of every error genbench raises on purpose."""

    exit_code = 1


class UsageError(GenbenchError, ValueError):
    """Bad usage or bad input: exit code 2, one line, no traceback."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """A registry lookup of a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataUnavailableError(UsageError):
    """A dataset whose files are not present (suites skip these specs with the message)."""


class RunFailure(GenbenchError, RuntimeError):
    """A failure of the run itself: exit code 1."""

    exit_code = 1
