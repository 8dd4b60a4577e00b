"""XLA flags of the test processes, the pytest process and the subprocesses that tests start.

The suite compiles hundreds of tiny programs, so compile time dominates it.
`--xla_backend_optimization_level=0` lowers only LLVM's optimization of the
generated CPU code: XLA's own HLO passes (fusion, layout) still run, and
without fast math LLVM does not reorder floating-point operations at any
level, so the numbers the tests check are the ones users get, computed by
slower machine code. On tiny test shapes it cuts compile time 2-3x.
"""

from __future__ import annotations

FAST_COMPILE = "--xla_backend_optimization_level=0"


def xla_flags(devices: int | None = None, base: str = "") -> str:
    """`base` plus the fast-compile flag and, if given, `devices` fake host devices."""
    flags = base.split()
    if FAST_COMPILE not in flags:
        flags.append(FAST_COMPILE)
    if devices is not None:
        flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(flags)
