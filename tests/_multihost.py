"""Runs an experiment script as 1 process x 4 devices and as 2 processes x 2 devices, in subprocesses.

Both runs use the same global mesh of 4 CPU devices, the same global batches
and the same keys; only the all-reduces differ (across processes through
`jax.distributed` vs inside one process), which changes float32 summation
order. Each experiment's test states the tolerance it compares them at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests._xla import free_port, subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment_command(module: str, config: str, out: Path, distributed: str) -> list[str]:
    """The command line that runs `experiments.<module>` with config `config` into `out`."""
    path = os.path.join(ROOT, "experiments", "configs", f"{module}.py") + f":{config}"
    return [sys.executable, "-m", f"experiments.{module}", "--config", path, "--out", str(out),
            "--distributed", distributed]


def run_single_and_pair(module: str, tmp_path: Path, config: str = "smoke", timeout: float = 300.0,
                        single_env: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Runs `experiments.<module>` both ways; returns the single run's and process 0's output directories.

    Asserts that every process exited cleanly, that process 0 wrote
    results.json and config.json, and that process 1 (given its own output
    directory) wrote nothing. `single_env` adds environment variables to the
    single run's.
    """
    # All three processes start together: the pair's processes wait on each other at every collective,
    # and the single run fills those gaps.
    single = tmp_path / "single"
    port = free_port()
    outs = [tmp_path / f"process{i}" for i in range(2)]
    procs = [subprocess.Popen(experiment_command(module, config, single, "off"), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=subprocess_env(4, **(single_env or {})))]
    job = dict(JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JCNF_NUM_PROCESSES="2")
    procs += [subprocess.Popen(experiment_command(module, config, outs[i], "auto"), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env=subprocess_env(2, JCNF_PROCESS_ID=str(i), **job))
              for i in range(2)]
    try:
        logs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log[-3000:]
    assert (outs[0] / "results.json").is_file() and (outs[0] / "config.json").is_file()
    assert not outs[1].exists() or not any(outs[1].iterdir())
    return single, outs[0]


def numbers(tree, prefix: str = "") -> dict[str, float]:
    """{path: float} of every number in a results tree; timings, device names, the config and booleans left out."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() if key not in ("seconds", "device", "config")
                for k, v in numbers(value, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in numbers(value, f"{prefix}[{i}]").items()}
    return {prefix: float(tree)} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}


def assert_same_results(single: Path, pair: Path, rtol: float, atol: float) -> None:
    """Every number of the two runs' results.json agrees within rtol/atol, under the same keys."""
    expected = numbers(json.loads((single / "results.json").read_text()))
    got = numbers(json.loads((pair / "results.json").read_text()))
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=rtol, atol=atol, err_msg=key)
