"""The project's error types for mistakes in what a user gave: a path, a flag, a config field, a store.

The CLI prints these as one line (the message names the file, key or field and says what is wrong) and
exits 2; any other exception is a bug or an environment failure and keeps its traceback
(architecture.md §Conventions). Each type also derives from the built-in exception it refines, so
`except ValueError` / `except FileNotFoundError` in callers keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every user-facing error."""


class InvalidInputError(UserError, ValueError):
    """A value, file content or combination of options that cannot work."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist (or is not what it should be)."""


class PathExistsError(UserError, FileExistsError):
    """An output the user named already exists and would be overwritten."""


class MissingKeyError(UserError, KeyError):
    """A key the user asked for (a store array, a camera, a statistic) is not there."""

    def __str__(self) -> str:  # KeyError's own str() quotes the whole message
        return str(self.args[0]) if self.args else ""
