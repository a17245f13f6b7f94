"""Errors raised by the model layer."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match the model or config.

    The message names the file and what differs (field, tensor, both values),
    so the user can act on it without opening the file.
    """
