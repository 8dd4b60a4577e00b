"""Preemption: stop every process of a run at one agreed step when a SIGTERM arrives.

A cloud or TPU VM receives SIGTERM shortly before it is taken away, often on
one host of a job only. `fit` asks `PreemptionWatch.stop_now()` after every
dispatch; when it answers True (on every process at the same dispatch), `fit`
saves a checkpoint and raises `Preempted`, and rerunning the same command
resumes from that checkpoint.

How the processes agree:
  * Several processes joined by `jax.distributed`: JAX's preemption service
    (`multihost_utils.reached_preemption_sync_point`). The coordination
    service catches SIGTERM itself, tells every process, and they agree on
    the first call count past the one each has reached; checking is a local
    call with no communication until a notice arrives. No Python signal
    handler is installed then: it would replace the service's.
  * Several processes without that service: a SIGTERM handler sets a local
    flag, and the flags are all-gathered after every dispatch (a host round
    trip per dispatch, the price of having no service).
  * One process: the SIGTERM handler's flag, read after every dispatch.
"""

from __future__ import annotations

import itertools
import signal
import threading
from types import FrameType
from typing import Any, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

# The preemption service counts calls per process for the process's whole life
# (a sync point is a call count), so the count is per process too: a second
# `fit` in the same process continues it and cannot meet an old sync point again.
_CALLS = itertools.count(1)


class Preempted(RuntimeError):  # noqa: N818 - names the event, as KeyboardInterrupt does
    """Raised by `fit` after it saved a checkpoint because the process received SIGTERM.

    Attributes:
      step: the step the checkpoint holds (the same on every process).
      checkpoint_dir: where it was saved, or None when the run had no
        `checkpoint_dir` (nothing was saved).
    """

    def __init__(self, step: int, checkpoint_dir: Optional[str]):
        self.step, self.checkpoint_dir = step, checkpoint_dir
        if checkpoint_dir is None:
            how = "nothing was saved (no `checkpoint_dir`); the run starts over when rerun"
        else:
            how = f"saved a checkpoint in {checkpoint_dir}; rerun the same command to resume from it"
        super().__init__(f"Preempted (SIGTERM) at step {step}: {how}.")


class PreemptionWatch:
    """Watches for SIGTERM between `start()` and `close()`; see the module docstring.

    Args:
      catch_signal: install the SIGTERM handler where one is needed (one
        process, or several without JAX's preemption service). Without it, a
        single process keeps the default SIGTERM behaviour (it dies).
    """

    def __init__(self, catch_signal: bool = True):
        self._catch_signal = catch_signal
        self._received = False
        self._previous: Any = None
        self._service = jax.process_count() > 1

    def start(self) -> "PreemptionWatch":
        """Installs the SIGTERM handler where one is needed; returns self."""
        # signal.signal works only in the main thread; a run in another thread keeps the default behaviour.
        if (self._catch_signal and not self._service and threading.current_thread() is threading.main_thread()):
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def close(self) -> None:
        """Puts the previous SIGTERM handler back."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum: int, frame: Optional[FrameType]) -> None:
        self._received = True

    def stop_now(self) -> bool:
        """Whether to stop after this dispatch; the same answer on every process. Call once per dispatch."""
        if jax.process_count() == 1:
            return self._received
        if self._service:
            try:
                return bool(multihost_utils.reached_preemption_sync_point(next(_CALLS)))
            except RuntimeError:
                # No preemption service in this job: from now on, agree through the flags.
                self._service = False
                self.start()
        flags = multihost_utils.process_allgather(np.int32(self._received))
        return bool(np.any(np.asarray(flags)))
