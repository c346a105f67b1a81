"""Errors a user can cause; the CLI prints them as one line instead of a traceback."""

__all__ = ["CheckpointError", "EnetError", "UsageError"]


class EnetError(Exception):
    """Base class for problems with the user's input, reported as ``enet: error: <message>``."""


class CheckpointError(EnetError, ValueError):
    """A checkpoint file is missing, truncated, foreign or does not fit the model."""


class UsageError(EnetError, ValueError):
    """An option or argument value that cannot work (unknown name, wrong count, ...)."""
