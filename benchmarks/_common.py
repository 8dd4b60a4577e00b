"""Helpers shared by the benchmarks: environment record, timing, FLOP counts, device peaks, JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Optional

import distrax
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jcnf

# Dense (no structured sparsity) peak FLOP/s from NVIDIA's data sheets, by the
# device_kind substring JAX reports. "tf32" is what XLA and PyTorch use for
# float32 matmuls and convolutions on these GPUs when TF32 is allowed (JAX's
# default precision on GPU allows it).
PEAK_FLOPS = {
    "H200": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12},
    "H100 PCIe": {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12},
    "H100": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12},  # SXM (e.g. "NVIDIA H100 80GB HBM3")
}


def cpu_name() -> str:
    """The host processor's model name (XLA names every CPU just "cpu")."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_name() -> str:
    device = jax.devices()[0]
    return cpu_name() if device.platform == "cpu" else device.device_kind


def peak_flops(name: Optional[str] = None) -> Optional[dict[str, float]]:
    """Dense peak FLOP/s of the device by precision, or None where unknown (CPUs, unlisted GPUs)."""
    name = device_name() if name is None else name
    if jax.devices()[0].platform == "cpu" and name == device_name():
        return None
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key in name:
            return PEAK_FLOPS[key]
    return None


def _jaxlib_version() -> Optional[str]:
    try:
        import jaxlib
        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def environment() -> dict:
    """Device, library versions and machine load: what a reader needs to compare two result files."""
    device = jax.devices()[0]
    record = {"device": device_name(), "platform": device.platform, "device_count": jax.device_count(),
              "python": platform.python_version(), "jax": jax.__version__, "jaxlib": _jaxlib_version(),
              "flax": flax.__version__, "optax": optax.__version__, "distrax": distrax.__version__,
              "jcnf": jcnf.__version__, "cpu_count": os.cpu_count(),
              # Other processes on a shared machine slow every figure down; the load tells a reader by how much.
              "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "peak_flops": peak_flops(),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        import torch
        record["torch"] = torch.__version__
    except ImportError:
        record["torch"] = None
    return record


def median_rate(run: Callable[[], Any], calls: int, repeats: int, warmup: int = 2) -> float:
    """Calls per second: median over `repeats` timed runs of `calls` calls, after `warmup` untimed calls.

    `run` must return the arrays it computed; the clock stops only once the
    last call's results are ready (`jax.block_until_ready`), so asynchronous
    dispatch cannot flatter the figure.
    """
    for _ in range(warmup):
        jax.block_until_ready(run())
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls - 1):
            run()
        jax.block_until_ready(run())
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)


def compiled_flops(*programs: Any) -> Optional[float]:
    """FLOPs of one call, from XLA's cost analysis of the first program that reports a positive count.

    Pass the lowered program first (`jax.jit(f).lower(...)`): its analysis
    runs on the HLO before backend optimization, where convolutions are still
    convolutions. After GPU compilation they become cuDNN custom calls that
    the analysis cannot count and reports as -1 ("unknown"), which must not
    be read as a FLOP figure.
    """
    for program in programs:
        try:
            analysis = program.cost_analysis()
        except Exception:  # some backends do not implement cost analysis
            continue
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0] if analysis else None
        flops = float(analysis.get("flops", -1.0)) if analysis else -1.0
        if flops > 0:
            return flops
    return None


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """Numerator / denominator, or None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return numerator / denominator


def fit_log_slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) against log(x): the exponent p of y ~ x^p."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def finite_or_none(value: Optional[float]) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None


def write_json(path: Optional[str], record: dict) -> None:
    """Writes the record atomically (a killed run leaves the previous complete file)."""
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)


def synthetic_params(init: Callable, *args, seed: int = 0, scale: float = 0.02) -> Any:
    """Parameters with the model's shapes filled with small Gaussian noise.

    Throughput does not depend on parameter values, so the data-dependent
    `init` (a compile of its own) is skipped; small noise keeps every
    coupling away from the identity and every 1x1 conv well conditioned.
    """
    shapes = jax.eval_shape(init, *args)
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [jnp.asarray(scale * rng.standard_normal(leaf.shape), leaf.dtype)
                                        for leaf in leaves])


def glow_inputs(size: int, batch: int, seed: int = 0, channels: int = 3) -> tuple[jax.Array, jax.Array]:
    """A value [batch, size, size, channels] in [0, 1) and a half-resolution context [batch, size/2, size/2, 3]."""
    rng = np.random.default_rng(seed)
    half = max(size // 2, 1)
    return (jnp.asarray(rng.uniform(size=(batch, size, size, channels)), jnp.float32),
            jnp.asarray(rng.normal(size=(batch, half, half, 3)), jnp.float32))
