"""The one error hierarchy of jobrec.

``server/`` maps each class to a gRPC status code in a single table; nothing else in the
code base needs to know about gRPC.
"""

from __future__ import annotations


class JobrecError(Exception):
    """Base class of every error jobrec raises on purpose."""


class InvalidInputError(JobrecError, ValueError):
    """A caller or input file gave a value that cannot be used.

    ``field`` names the offending field when there is one, so a frontend can report it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MalformedSourceError(InvalidInputError):
    """An input file or API response cannot be parsed at all (not one bad record)."""


class UpstreamApiError(JobrecError):
    """The Work24/Worknet Open API answered with an error message."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{message} (code {code})" if code else message)
        self.code = code


class NotFoundError(JobrecError, KeyError):
    """A posting (or other entity) id is not known."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep messages readable
        return str(self.args[0]) if self.args else "not found"


class AlreadyExistsError(JobrecError):
    """An entity that must be new already exists."""


class UnavailableError(JobrecError):
    """A dependency (a shard actor, the Ray cluster) cannot be reached right now."""


class RetiredError(UnavailableError):
    """The part called was superseded (a sealed matching generation): call its successor."""


class PermissionDeniedError(JobrecError):
    """The caller is authenticated but its key lacks the scope the call needs."""


class OverloadedError(JobrecError):
    """More work is in flight than the configured bound allows."""


class NotConfiguredError(JobrecError):
    """The call needs a part the process was not started with (e.g. an interaction log)."""


class ModelError(JobrecError):
    """A model directory is missing, incomplete or incompatible."""
