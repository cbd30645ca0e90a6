"""The inside of one rank started by ``nbengine.distributed.notebook_launcher``: tie the process's life
to its launcher, read the function to run, join the process group, run it, and report how it ended.

This module owns the child's side of the launcher's protocol (the parent's side is in
``notebook_launcher``):

- **stdin** carries one JSON header line, then ``payload_size`` bytes: ``(fn, args, kwargs)``
  serialised with cloudpickle. stdin then stays open and is never written again: its end of file
  means the launcher is gone, and the rank kills itself.
- **fd ``result_fd``** (inherited) receives one cloudpickled outcome: ``("ok", value)`` or
  ``("error", RemoteFailure)``; then the process exits.
- **stdout / stderr** are pipes that the launcher relays, prefixed with the rank, to the cell that
  launched the job. A failure's traceback is printed to stderr, so it is shown even when nobody waits.

The rank never outlives the launcher: ``PR_SET_PDEATHSIG`` (Linux) when the launcher asks for it,
and in every case a watchdog thread that blocks on stdin and ends the process at its end of file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

#: prctl option that delivers a signal to this process when the thread that created it exits.
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RemoteFailure:
    """How a rank failed, in a form that always unpickles in the launcher: the exception's type
    name, its message, the formatted traceback, and the exception itself when it could be pickled."""

    type_name: str
    message: str
    traceback: str
    pickled_exception: bytes | None
    #: ``time.time()`` when the rank caught it: the launcher blames the earliest failure.
    time: float


def _die_with_parent(launcher_pid: int, use_pdeathsig: bool) -> None:
    if use_pdeathsig and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The launcher may have died before prctl took effect: then the parent is already someone else.
    if os.getppid() != launcher_pid:
        os._exit(1)


def _watch_launcher(fd: int) -> None:
    """Block on stdin; its end of file (or an error) means the launcher closed it or died. The raw fd
    is read, not ``sys.stdin``: a daemon thread holding the buffered reader's lock at interpreter exit
    is a fatal error."""

    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            # The pipe broke: the launcher is gone all the same.
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="nbengine-launcher-watchdog", daemon=True).start()


def _failure(error: BaseException) -> RemoteFailure:
    import cloudpickle

    try:
        pickled: bytes | None = cloudpickle.dumps(error)
    except Exception:
        # An exception that cannot be pickled is still reported by its type, message and traceback.
        pickled = None
    text = "".join(traceback.format_exception(type(error), error, _user_frames(error.__traceback__)))
    return RemoteFailure(type(error).__qualname__, str(error), text, pickled, time.time())


def _user_frames(frames: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame that is not this module's (the launcher's own frames say
    nothing about the failure)."""
    while frames is not None and frames.tb_next is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    return frames


def _run(header: dict, payload: bytes) -> Any:
    import cloudpickle

    from nbengine.distributed import utils as idist

    fn, args, kwargs = cloudpickle.loads(payload)
    init_kwargs = dict(header["init_kwargs"])
    if "timeout" in init_kwargs:
        init_kwargs["timeout"] = timedelta(seconds=init_kwargs["timeout"])
    idist.initialize(header["backend"], **init_kwargs)
    value = fn(int(os.environ["LOCAL_RANK"]), *args, **kwargs)
    idist.finalize()
    return value


def _report(result_fd: int, outcome: tuple) -> None:
    import cloudpickle

    try:
        data = cloudpickle.dumps(outcome)
    except Exception as error:
        # The function returned a value that cannot travel back: that is this rank's failure.
        data = cloudpickle.dumps(("error", _failure(TypeError(f"the return value could not be pickled: {error}"))))
    with os.fdopen(result_fd, "wb") as channel:
        channel.write(data)


def main(header: dict) -> None:
    """Entry point of a rank process, called by the launcher's bootstrap with the header it read."""
    stdin = sys.stdin.buffer
    _die_with_parent(header["launcher_pid"], header["pdeathsig"])
    payload = stdin.read(header["payload_size"])
    _watch_launcher(stdin.fileno())
    try:
        outcome: tuple = ("ok", _run(header, payload))
    except BaseException as error:
        failure = _failure(error)
        sys.stderr.write(failure.traceback)
        outcome = ("error", failure)
    _report(header["result_fd"], outcome)
    sys.stdout.flush()
    sys.stderr.flush()
    if outcome[0] == "error":
        # Not a normal interpreter exit: the process group may be mid-collective, and its teardown
        # could block on peers that the launcher is about to stop.
        os._exit(1)
