"""User-facing errors: every one carries a message a person can act on without a traceback."""

from __future__ import annotations


class MtlkitError(ValueError):
    """Base class for errors caused by the caller's input (data, names, options).

    The CLI prints these as one line and exits non-zero; anything else is a bug.
    """


class DataError(MtlkitError):
    """The data are malformed: bad shapes, NaN/inf features, labels outside a task's classes."""


class DataDirError(MtlkitError, FileNotFoundError):
    """A real data set's file is not where the data directory says it should be."""


class UnknownNameError(MtlkitError, KeyError):
    """An unknown method, data set or option name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
