"""Take raw messages without holding Python's interpreter lock, and leave oversized ones unread.

rclpy takes a message inside the interpreter lock: a hostile 80 MB command froze every thread of the arm
driver (control loop and e-stop alike) for 35-66 ms while rclpy copied it, only for the driver to drop it.
Here the take is one call into ``rcl`` through ctypes, which releases the lock for the call, so the copy
runs beside the Python threads; a message over the subscription's limit is never copied into Python.

A subscription opts in with :func:`limit` (its callback then gets ``bytes``, or the size in bytes of a
message it did not get); :class:`BoundedExecutor` takes such subscriptions this way and every other one
as rclpy does. Where ``rcl`` cannot be loaded, the executor falls back to rclpy's take (same results,
the lock held).
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any

from rclpy.exceptions import InvalidHandle
from rclpy.executors import SingleThreadedExecutor, await_or_execute

RCL_RET_OK = 0
RCL_RET_SUBSCRIPTION_TAKE_FAILED = 401


class _Allocator(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("allocate", "deallocate", "reallocate", "zero_allocate", "state")]


class _SerializedMessage(ctypes.Structure):  # rcutils_uint8_array_t
    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_length", ctypes.c_size_t),
                ("buffer_capacity", ctypes.c_size_t), ("allocator", _Allocator)]


def _load(name: str) -> ctypes.CDLL:
    """The library rclpy has loaded (found by its soname), else the one beside this Python's packages."""
    try:
        return ctypes.CDLL(name)
    except OSError:
        return ctypes.CDLL(str(Path(sys.prefix) / "lib" / name))


def _bind() -> tuple[ctypes.CDLL, ctypes.CDLL] | None:
    try:
        rcl, rcutils = _load("librcl.so"), _load("librcutils.so")
    except OSError:
        return None
    rcutils.rcutils_get_default_allocator.restype = _Allocator
    rcutils.rcutils_uint8_array_init.argtypes = [ctypes.POINTER(_SerializedMessage), ctypes.c_size_t,
                                                 ctypes.POINTER(_Allocator)]
    rcutils.rcutils_uint8_array_fini.argtypes = [ctypes.POINTER(_SerializedMessage)]
    rcutils.rcutils_reset_error.argtypes = []
    rcl.rcl_take_serialized_message.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedMessage),
                                                ctypes.c_void_p, ctypes.c_void_p]
    return rcl, rcutils


_LIBS = _bind()


def limit(subscription: Any, max_bytes: int) -> Any:
    """Mark a raw subscription: :class:`BoundedExecutor` hands its callback messages of at most ``max_bytes``
    as ``bytes`` and larger ones as their size (an ``int``), never copied."""
    subscription.max_message_bytes = max_bytes
    return subscription


def take(subscription: Any) -> bytes | int | None:
    """One message of a :func:`limit`-ed raw subscription (``None``: none waiting), the lock released."""
    assert _LIBS is not None
    rcl, rcutils = _LIBS
    message = _SerializedMessage()
    allocator = rcutils.rcutils_get_default_allocator()
    if rcutils.rcutils_uint8_array_init(ctypes.byref(message), 0, ctypes.byref(allocator)) != RCL_RET_OK:
        rcutils.rcutils_reset_error()
        raise MemoryError("could not initialise a serialized message")
    try:
        with subscription.handle:
            ret = rcl.rcl_take_serialized_message(subscription.handle.pointer, ctypes.byref(message), None, None)
        if ret == RCL_RET_SUBSCRIPTION_TAKE_FAILED:
            return None
        if ret != RCL_RET_OK:
            rcutils.rcutils_reset_error()
            raise RuntimeError(f"rcl_take_serialized_message failed ({ret}) on {subscription.topic_name}")
        if message.buffer_length > subscription.max_message_bytes:
            return int(message.buffer_length)
        return ctypes.string_at(message.buffer, message.buffer_length)
    finally:
        rcutils.rcutils_uint8_array_fini(ctypes.byref(message))


class BoundedExecutor(SingleThreadedExecutor):
    """rclpy's single-threaded executor that takes :func:`limit`-ed subscriptions with :func:`take`."""

    def _take_subscription(self, sub):  # rclpy's hook: returns the callback's coroutine, or None
        if _LIBS is None or getattr(sub, "max_message_bytes", None) is None:
            return super()._take_subscription(sub)
        try:
            data = take(sub)
        except InvalidHandle:  # destroyed meanwhile
            return None
        if data is None:
            return None

        async def _execute() -> None:
            await await_or_execute(sub.callback, data)

        return _execute
