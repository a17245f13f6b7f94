"""Running nodes as processes: init, spin, clean shutdown on Ctrl-C or SIGTERM.

Torch-free, so nodes that do not run a policy (recorder, replay) share it
with the controller without importing torch.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

SPIN_POLL_S = 0.1  # longest a signal waits for the spin loop to notice it
#: Executors a node process can spin with (its ``executor`` parameter).
EXECUTOR_KINDS = ("events", "single_threaded")


def make_executor(kind: str, context: Context | None = None) -> tuple[Executor, str]:
    """The executor ``kind`` names, and a line saying which one runs (and why, if it is not ``kind``).

    ``events``: rclpy's EventsExecutor (``rclpy.experimental``, from Jazzy's rclpy 7.1 on): callbacks are
    dispatched from the middleware's events in C++, without rebuilding a wait set in Python each turn;
    measured here it takes about 0.6 ms off a camera-to-command round trip (benchmarks/node_latency.py).
    Where this rclpy lacks it, the single-threaded executor runs instead and the line says so.
    ``single_threaded``: rclpy's default executor (what ``rclpy.spin`` uses).
    """
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"executor {kind!r} is not one of {', '.join(EXECUTOR_KINDS)}")
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            return SingleThreadedExecutor(context=context), (
                "executor: single_threaded (this rclpy has no rclpy.experimental.EventsExecutor)"
            )
        return EventsExecutor(context=context), "executor: events"
    return SingleThreadedExecutor(context=context), "executor: single_threaded"


class NodeExit(Exception):
    """Raised from a callback to end the node's process with ``code`` (see :func:`run_node`)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason or f"exit {code}")
        self.code = code


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """``rclpy.init``, build the node, spin until Ctrl-C, external shutdown or a :class:`NodeExit`, then
    tear down. Returns the process exit code: 0, or the ``NodeExit``'s."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = factory()
        spin_until_shutdown(node)
    except NodeExit as done:
        code = done.code
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def spin_until_shutdown(node: Node) -> None:
    """``rclpy.spin(node)`` until Ctrl-C or an external shutdown, either of which is a clean stop.

    rclpy's signal handler shuts the context down at once, also while a callback runs: a publish in that
    callback then raises ("publisher's context is invalid"). Once the context is down that error is the
    stop itself, not a failure; while it is up, every error propagates.
    """
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except NodeExit:
        raise
    except Exception:
        if node.context.ok():
            raise


class ShutdownRequest:
    """Set by SIGINT/SIGTERM; the spin loop polls it.

    The handler only records the signal: raising ``KeyboardInterrupt`` from
    it (Python's default), or rclpy's own handlers shutting the context
    down, would interrupt whatever runs at that moment: rclpy's bookkeeping,
    a callback, the middle of writing a message to a bag, or the shutdown
    sequence itself when a second signal comes. Recording the signal lets
    the loop finish the work in hand and the node close cleanly (a final
    zero command, a finalised bag). Use with
    ``rclpy.init(signal_handler_options=SignalHandlerOptions.NO)``.
    """

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None

    def install(self) -> dict[int, Any]:
        """Handle SIGINT and SIGTERM; returns the previous handlers for :meth:`restore`."""
        return {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def restore(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spin_until(
    executor: Executor, stop: ShutdownRequest, deadline: float | None = None, done: Callable[[], bool] | None = None
) -> None:
    """Spin until a signal, the context shuts down, ``deadline`` (monotonic s) passes or ``done()``.

    ``spin_once`` returns to Python at least every ``SPIN_POLL_S``: a Python
    signal handler runs only between bytecodes, and under ``use_sim_time``
    with no ``/clock`` (simulator paused or gone) no timer ever wakes the
    wait set, so an unbounded wait would swallow Ctrl-C.
    """
    while not stop and executor.context.ok():
        if deadline is not None and time.monotonic() >= deadline:
            return
        if done is not None and done():
            return
        try:
            executor.spin_once(timeout_sec=SPIN_POLL_S)
        except ExternalShutdownException:
            return
