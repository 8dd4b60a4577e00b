"""An experiment run as 2 processes x 2 devices matches 1 process x 4 devices, and only process 0 writes.

Both runs use the same global mesh of 4 CPU devices, the same global batches
and the same keys; only the all-reduces differ (across processes through
jax.distributed vs inside one process), which changes float32 summation
order. The run is compared at rtol 1e-3: a few dozen Adam steps of a tiny
flow amplify float32 rounding (~1e-7) by a few orders of magnitude at most.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "experiments", "configs", "rosenbrock.py") + ":smoke"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _command(out: str, distributed: str) -> list[str]:
    return [sys.executable, "-m", "experiments.rosenbrock", "--config", SMOKE, "--out", out,
            "--distributed", distributed]


def _env(devices: int, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JCNF_", "JAX_COORDINATOR"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)
    return env


def _numbers(tree, prefix=""):
    """{path: float} of every number in a results tree, timings and device names left out."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() if key not in ("seconds", "device", "config")
                for k, v in _numbers(value, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in _numbers(value, f"{prefix}[{i}]").items()}
    return {prefix: float(tree)} if isinstance(tree, (int, float)) and tree is not None else {}


def test_rosenbrock_two_processes_match_one_process(tmp_path):
    single = tmp_path / "single"
    subprocess.run(_command(str(single), "off"), check=True, timeout=300, cwd=ROOT, env=_env(4),
                   capture_output=True)
    port = _free_port()
    outs = [tmp_path / f"process{i}" for i in range(2)]
    procs = [subprocess.Popen(_command(str(outs[i]), "auto"), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              env=_env(2, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JCNF_NUM_PROCESSES="2",
                                       JCNF_PROCESS_ID=str(i)))
             for i in range(2)]
    try:
        logs = [proc.communicate(timeout=300)[0].decode() for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, log in zip(procs, logs, strict=False):
        assert proc.returncode == 0, log[-3000:]
    # Process 0 writes everything; process 1, given its own directory, writes nothing.
    assert (outs[0] / "results.json").is_file() and (outs[0] / "config.json").is_file()
    assert not outs[1].exists() or not any(outs[1].iterdir())
    expected = _numbers(json.loads((single / "results.json").read_text()))
    got = _numbers(json.loads((outs[0] / "results.json").read_text()))
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-3, atol=1e-4, err_msg=key)
