"""Argument types shared by the ``lnn-nav`` subcommands: counts, durations, rates and sizes.

One place, so every command refuses a bad number with the same words. Light (argparse only):
a command module's ``add_arguments`` may use it without pulling anything in, and, like the root
package's ``lazy_exports``, every package may import it (tests/test_import_contract.py).
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (threads, workers, episodes)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (at least 1), got {text}")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (a rate, a period, a duration)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0 (an offset, a delay); NaN is refused."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def byte_size(text: str) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1024): ``500M``, ``2G``; >= 0."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    scale = units.get(text[-1:].upper(), 1)
    try:
        value = int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in bytes (e.g. 500M), got {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a size >= 0, got {text}")
    return value
