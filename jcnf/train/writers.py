"""Where `fit` writes its logged records: a JSON-lines file, and optionally TensorBoard.

Both write on process 0 only and both drop, on resume, what the interrupted
run logged after the restored checkpoint (the resumed run logs those steps
again), so each step appears once.

Why not `clu.metric_writers`: its TensorBoard writer needs TensorFlow, which
jcnf's default install avoids, and neither it nor its JSON-free writers drop
the records of steps redone after a resume.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional

import jax
from etils import epath


class MetricsLog:
    """Appends one JSON object per line to `path` (process 0 only).

    The path goes through `etils.epath`, so it may be local or remote
    (`gs://bucket/run/metrics.jsonl`). On resume, records of steps after the
    restored checkpoint (written by the interrupted run, then redone) are
    dropped, so each step appears once.
    """

    def __init__(self, path: Optional[str | os.PathLike], resume_step: int = 0):
        self.path = None if path is None or jax.process_index() != 0 else epath.Path(path)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step and self.path.exists():
            lines = self.path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            # Rewrite even when nothing is kept: every line may be newer than the checkpoint.
            self.path.write_text("".join(kept))
        elif self.path.exists():
            self.path.unlink()

    def write(self, record: Mapping[str, Any]) -> None:
        """Appends `record` as one line."""
        if self.path is not None:
            # Opened per record, so a killed run leaves every logged line on storage.
            with self.path.open("a") as out:
                out.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Nothing to release: each record is appended and the file closed at once."""


class TensorBoardLog:
    """Writes each record's numbers as TensorBoard scalars under `directory` (process 0 only).

    Uses `tensorboardX` (no TensorFlow needed; `pip install jcnf[tensorboard]`),
    imported only when a directory is given. Every key but "step" becomes a
    scalar tag at that step.

    Args:
      directory: the TensorBoard log directory, or None for no writer.
      resume_step: the step the run resumes from; TensorBoard discards the
        events the interrupted run wrote after it.
    """

    def __init__(self, directory: Optional[str | os.PathLike], resume_step: int = 0):
        self._writer = None
        if directory is None or jax.process_index() != 0:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError("`tensorboard_dir` needs the tensorboardX package: pip install 'jcnf[tensorboard]' "
                              "(or pip install tensorboardX).") from err
        # purge_step: TensorBoard drops the older file's events from this step on.
        self._writer = SummaryWriter(os.fspath(directory), purge_step=resume_step + 1 if resume_step else None)

    def write(self, record: Mapping[str, Any]) -> None:
        """Adds each finite number of `record` as a scalar at `record["step"]`."""
        if self._writer is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key, float(value), step)

    def close(self) -> None:
        """Flushes the event file."""
        if self._writer is not None:
            self._writer.close()
