"""XLA flags and environment of the test processes: the pytest process and the subprocesses tests start.

The suite compiles hundreds of tiny programs, so compile time dominates it.
Two flags cut it without touching XLA's HLO passes (fusion, layout):

* `--xla_backend_optimization_level=0` lowers only LLVM's optimization of the
  generated CPU code. On tiny test shapes it cuts compile time 2-3x.
* `--xla_cpu_use_fusion_emitters=false` emits each fusion's loops directly
  to LLVM IR instead of through XLA's MLIR fusion emitters, whose lowering
  pipeline costs more than the fusion it compiles. It roughly halves the
  remaining compile time (the seismic smoke run's compilations: 45 s -> 17 s).

The machine code differs (no fused multiply-adds or vectorized loops), so results
can differ from a default run in the last float32 bits; trained
figures drift by more (the seismic smoke run's SNRs moved by ~1e-3
relative). Every tolerance in the tests is stated for float32 rounding, and
the committed result files come from default runs.
"""

from __future__ import annotations

import os
import socket

FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def xla_flags(devices: int | None = None, base: str = "") -> str:
    """`base` plus the fast-compile flags and, if given, `devices` fake host devices."""
    flags = base.split()
    flags += [flag for flag in FAST_COMPILE if flag not in flags]
    if devices is not None:
        flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(flags)


def subprocess_env(devices: int | None = None, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that a test starts.

    This process's environment on the CPU, with the tests' XLA flags (and `devices` fake host devices if
    given), without a multi-process job's variables, plus `extra`.
    """
    env = {key: value for key, value in os.environ.items()
           if key != "XLA_FLAGS" and not key.startswith(("JCNF_", "JAX_COORDINATOR"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices), **extra)
    return env


def free_port() -> int:
    """A localhost port that is free now, for a `jax.distributed` coordinator."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]
