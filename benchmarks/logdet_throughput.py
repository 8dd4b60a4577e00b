"""Density-evaluation and sampling throughput of jcnf's bijectors and flows, against a naive baseline and PyTorch.

For each bijector alone (ActNorm, LU 1x1 conv, affine and spline coupling),
for whole `ConditionalGlow` models and for a `ConditionalRealNVP`, it times
`forward_and_log_det` (value -> latent: density evaluation) and `inverse`
(latent -> value: sampling) in samples/s, and the same computation written
the naive way with plain distrax (`benchmarks/_naive.py` names each
difference), jitted identically. When torch is importable it also times a
PyTorch Glow of the same architecture (`benchmarks/_torch_glow.py`), eager
and `torch.compile`d. Glow runs in float32 and with bfloat16 networks; the
coupling networks' achieved FLOP/s (FLOPs from XLA's cost analysis) is
reported as a fraction of the device's dense peak where that is known.

Compilation and warm-up are excluded, every timed run ends in
`block_until_ready` (or `torch.cuda.synchronize`), and the median of
repeats is reported. The JSON is rewritten after every section, so a run cut
short by a timeout keeps what it measured.

    python -m benchmarks.logdet_throughput --quick --json benchmarks/results/logdet_throughput_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import jcnf
from benchmarks import _naive
from benchmarks._common import compiled_flops, environment, median_rate, peak_flops, ratio, synthetic_params, write_json
from jcnf.bijectors import ActNorm, ConditionalAffineCoupling, ConditionalSplineCoupling, InvConv1x1
from jcnf.bijectors.coupling import coupling_param_size
from jcnf.nets.coupling_nets import ConvCouplingNet

# Sizes. "default" marks the Glow whose ratios go into the summary.
#   bijectors: value [batch, height, width, channels], conditioner width, context feature channels.
#   glows: ConditionalGlow kwargs plus image size, batch and which extras (bf16, torch) to run.
SIZES = {
    # Seconds on a CPU: the smoke test and the GPU script's dry run.
    "tiny": {
        "bijectors": {"shape": (2, 4, 4, 4), "hidden": 4, "features": 2},
        "glows": [{"name": "glow8_L1_K2_h4", "levels": 1, "blocks": 2, "hidden": 4, "context_features": 2,
                   "encoder_blocks": 1, "size": 8, "batch": 2, "default": True, "bf16": True, "torch": True}],
        "realnvp": {"layers": 2, "hidden": 4, "dim": 4, "context": 2, "batch": 8},
        "calls": 2, "repeats": 2,
    },
    # Under a minute on a 2-core CPU.
    "quick": {
        "bijectors": {"shape": (8, 8, 8, 12), "hidden": 32, "features": 8},
        "glows": [{"name": "glow16_L2_K4_h32", "levels": 2, "blocks": 4, "hidden": 32, "context_features": 8,
                   "encoder_blocks": 1, "size": 16, "batch": 8, "default": True, "bf16": True, "torch": True}],
        "realnvp": {"layers": 4, "hidden": 32, "dim": 8, "context": 4, "batch": 128},
        "calls": 10, "repeats": 3,
    },
    # The GPU sweep (about 5 minutes on an H100 including compilation): the
    # reference Glow (L=3, K=16, hidden 512, 32x32) first, then depth, width and resolution.
    "full": {
        "bijectors": {"shape": (64, 16, 16, 12), "hidden": 512, "features": 64},
        "glows": [
            {"name": "glow32_L3_K16_h512", "levels": 3, "blocks": 16, "hidden": 512, "context_features": 64,
             "encoder_blocks": 2, "size": 32, "batch": 64, "default": True, "bf16": True, "torch": True},
            {"name": "glow32_L3_K8_h512", "levels": 3, "blocks": 8, "hidden": 512, "context_features": 64,
             "encoder_blocks": 2, "size": 32, "batch": 64},
            {"name": "glow32_L3_K16_h128", "levels": 3, "blocks": 16, "hidden": 128, "context_features": 64,
             "encoder_blocks": 2, "size": 32, "batch": 64},
            {"name": "glow64_L3_K16_h256", "levels": 3, "blocks": 16, "hidden": 256, "context_features": 64,
             "encoder_blocks": 2, "size": 64, "batch": 32},
            {"name": "glow32_L3_K32_h512", "levels": 3, "blocks": 32, "hidden": 512, "context_features": 64,
             "encoder_blocks": 2, "size": 32, "batch": 64},
        ],
        "realnvp": {"layers": 8, "hidden": 256, "dim": 16, "context": 8, "batch": 4096},
        "calls": 10, "repeats": 5,
    },
}
IMAGE_CHANNELS = 3
CONTEXT_CHANNELS = 3  # a low-resolution image at half the value's resolution (super-resolution style)


def _timed(fn: Callable, args: tuple, batch: int, calls: int, repeats: int) -> dict:
    """Compiles `fn` (timed separately), then measures samples/s; returns rate, compile time and FLOPs/call."""
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    compiled = lowered.compile()
    jax.block_until_ready(compiled(*args))
    compile_s = time.perf_counter() - start
    rate = batch * median_rate(lambda: compiled(*args), calls, repeats)
    return {"samples_per_s": rate, "compile_s": round(compile_s, 3),
            "flops_per_call": compiled_flops(lowered, compiled), "_compiled": compiled}


def _public(result: dict) -> dict:
    """A `_timed` result without the compiled program (for the JSON)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def bench_bijectors(sizes: dict, calls: int, repeats: int, names: Optional[list[str]] = None) -> list[dict]:
    """Each bijector alone, ours vs naive, forward_and_log_det and inverse."""
    batch, height, width, channels = sizes["shape"]
    hidden, num_features = sizes["hidden"], sizes["features"]
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, sizes["shape"])
    features = jax.random.normal(jax.random.fold_in(key, 1), (batch, height, width, num_features))
    split = channels // 2
    rng = np.random.default_rng(1)

    def small(*shape):
        return jnp.asarray(0.05 * rng.standard_normal(shape), jnp.float32)

    conv = {"lower": small(channels, channels), "upper": small(channels, channels), "log_diag": small(channels)}
    actnorm = {"loc": small(channels), "log_scale": small(channels)}
    cases = {
        "actnorm": (lambda p, v: ActNorm(p["loc"], p["log_scale"]),
                    lambda p, v: _naive.naive_actnorm(p["loc"], p["log_scale"], 3), actnorm, actnorm,
                    "distrax.Block(ScalarAffine): log-scale broadcast to every element and summed"),
        "lu_conv1x1": (lambda p, v: InvConv1x1(p["lower"], p["upper"], p["log_diag"]),
                       lambda p, v: _naive.DenseConv1x1(p["weight"]), conv, {"weight": _naive.dense_weight(conv)},
                       _naive.DIFFERENCES["conv1x1_log_det"] + "; " + _naive.DIFFERENCES["conv1x1_inverse"]),
    }
    for kind, cls in (("affine", ConditionalAffineCoupling), ("spline", ConditionalSplineCoupling)):
        out = coupling_param_size(kind, channels - split)
        net = ConvCouplingNet(out, hidden)
        net_params = synthetic_params(net.init, key, x[..., :split], features, seed=2)

        def ours(p, v, net=net, cls=cls):
            return cls(lambda x1, h: net.apply(p, x1, h), features, split, 3)

        def naive(p, v, net=net, kind=kind):
            return _naive.naive_coupling(kind, lambda x1: net.apply(p, x1, features), split, 3)

        cases[f"{kind}_coupling"] = (ours, naive, net_params, net_params,
                                     "none: the same distrax.SplitCoupling and conditioner (a control)")

    results = []
    for name, (make_ours, make_naive, ours_params, naive_params, difference) in cases.items():
        if names is not None and name not in names:
            continue
        entry = {"bijector": name, "shape": list(sizes["shape"]), "naive_difference": difference}
        for label, make, params in (("ours", make_ours, ours_params), ("naive", make_naive, naive_params)):
            forward = _timed(lambda p, v, make=make: make(p, v).forward_and_log_det(v), (params, x), batch, calls,
                             repeats)
            inverse = _timed(lambda p, v, make=make: make(p, v).inverse(v), (params, x), batch, calls, repeats)
            entry[label] = {"forward": _public(forward), "inverse": _public(inverse)}
        entry["forward_ratio_vs_naive"] = ratio(entry["ours"]["forward"]["samples_per_s"],
                                                entry["naive"]["forward"]["samples_per_s"])
        entry["inverse_ratio_vs_naive"] = ratio(entry["ours"]["inverse"]["samples_per_s"],
                                                entry["naive"]["inverse"]["samples_per_s"])
        results.append(entry)
        print(f"  {name:16} fwd {entry['ours']['forward']['samples_per_s']:>12.0f}/s "
              f"(x{entry['forward_ratio_vs_naive']:.2f} naive)  "
              f"inv {entry['ours']['inverse']['samples_per_s']:>12.0f}/s "
              f"(x{entry['inverse_ratio_vs_naive']:.2f} naive)", flush=True)
    return results


def _coupling_flops(config: dict, dtype) -> Optional[float]:
    """FLOPs of all coupling networks in one Glow forward call, from XLA's cost analysis of one net per level.

    Counted on the CPU backend whatever the device: a FLOP count is a property
    of the program, and after GPU compilation XLA's analysis cannot count the
    cuDNN convolutions (it reports -1).
    """
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    total = 0.0
    channels, size = IMAGE_CHANNELS, config["size"]
    for level in range(config["levels"]):
        channels, size = channels * 4, size // 2
        split = channels // 2
        net = ConvCouplingNet(coupling_param_size("affine", channels - split), config["hidden"], dtype=dtype)
        x1 = jax.ShapeDtypeStruct((config["batch"], size, size, split), jnp.float32, sharding=cpu)
        h = jax.ShapeDtypeStruct((config["batch"], size, size, config["context_features"]), jnp.float32, sharding=cpu)
        params = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=cpu),
                              jax.eval_shape(net.init, jax.random.PRNGKey(0), x1, h))
        lowered = jax.jit(net.apply).lower(params, x1, h)
        flops = compiled_flops(lowered, lowered.compile())
        if flops is None:
            return None
        total += config["blocks"] * flops
        if level < config["levels"] - 1:
            channels //= 2
    return total


def _flop_fraction(flops_per_call: Optional[float], samples_per_s: float, batch: int, precision: str,
                   peaks: Optional[dict[str, float]]) -> dict:
    achieved = None if flops_per_call is None else flops_per_call * samples_per_s / batch
    if achieved is None:
        fractions = "unknown (XLA could not count the coupling networks' FLOPs)"
    elif peaks is None:
        fractions = "unknown (no peak figure for this device)"
    else:
        fractions = {name: achieved / peak for name, peak in peaks.items()
                     if (precision == "float32" and name in ("fp32", "tf32")) or
                     (precision == "bfloat16" and name == "bf16")}
    return {"coupling_flops_per_call": flops_per_call, "coupling_flop_per_s": achieved, "fraction_of_peak": fractions}


def fill_flop_fractions(json_path: str) -> dict:
    """Recounts the coupling FLOPs of every Glow in a results file and rewrites its fractions of peak.

    For results written before the FLOPs were counted on the CPU backend: the
    throughputs and the device's peak are the file's own, only the FLOP
    counts are recomputed (they do not depend on the device).
    """
    with open(json_path) as f:
        record = json.load(f)
    peaks = record["environment"].get("peak_flops")
    for entry in record["glows"]:
        config = dict(entry["glow"], size=entry["value_shape"][1], batch=entry["batch"])
        for dtype_name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
            if dtype_name not in entry:
                continue
            result = entry[dtype_name]
            flops = _coupling_flops(config, dtype)
            result["coupling_networks"] = {
                direction: _flop_fraction(flops, result["ours"][direction]["samples_per_s"], entry["batch"],
                                          dtype_name, peaks) for direction in ("forward", "inverse")}
    record["summary"].update(_summary(record))
    write_json(json_path, record)
    return record


def _torch_peer(config: dict, value: np.ndarray, context: np.ndarray, z: np.ndarray, calls: int, repeats: int,
                compile_modes: bool, bf16: bool, result: dict, progress: Callable[[], None]) -> None:
    """The PyTorch Glows: ours-architecture eager (float32, bf16 autocast on GPU), normflows eager, then compiled.

    Fills `result` in place and calls `progress` after each variant, so a run
    stopped during a long `torch.compile` keeps the figures measured before.
    """
    try:
        import torch
    except ImportError:
        result["skipped"] = "torch is not importable"
        return
    from benchmarks._torch_glow import TorchConditionalGlow

    device = "cuda" if torch.cuda.is_available() else "cpu"
    # TF32 on, as XLA uses by default for float32 convolutions on these GPUs (and as the reference PyTorch figures did).
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = TorchConditionalGlow(IMAGE_CHANNELS, CONTEXT_CHANNELS, config["levels"], config["blocks"],
                                 config["hidden"], config["context_features"], config["encoder_blocks"]).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.eval()
    to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(device)
    value_t, context_t, z_t = to_nchw(value), to_nchw(context), to_nchw(z)
    batch = value.shape[0]

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def rate(fn, *args) -> dict:
        start = time.perf_counter()
        with torch.no_grad():
            fn(*args)
            sync()
            first_s = time.perf_counter() - start
            for _ in range(2):
                fn(*args)
            sync()
            rates = []
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(calls):
                    fn(*args)
                sync()
                rates.append(batch * calls / (time.perf_counter() - start))
        return {"samples_per_s": float(np.median(rates)), "first_call_s": round(first_s, 3)}

    if device == "cpu":
        # On a shared, loaded CPU, PyTorch's intra-op threads can spin-wait each other 10x slower than
        # one thread; give the peer whichever thread count is faster here, and say which.
        timings = {}
        for threads in sorted({torch.get_num_threads(), 1}, reverse=True):
            torch.set_num_threads(threads)
            with torch.no_grad():
                model.forward_and_log_det(value_t, context_t)
                start = time.perf_counter()
                for _ in range(3):
                    model.forward_and_log_det(value_t, context_t)
            timings[threads] = time.perf_counter() - start
        torch.set_num_threads(min(timings, key=timings.get))
    result.update({"implementation": "benchmarks/_torch_glow.py (same architecture as jcnf.ConditionalGlow)",
                   "device": device, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "num_params": sum(p.numel() for p in model.parameters())})

    def measure(label, forward, inverse):
        try:
            result[label] = {"forward": rate(forward, value_t, context_t), "inverse": rate(inverse, z_t, context_t)}
        except Exception as error:  # e.g. no C++ compiler for inductor on this host
            result[label] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        print(f"    torch {label}: {result[label]}", flush=True)
        progress()

    measure("eager", model.forward_and_log_det, model.inverse)
    if bf16 and device == "cuda":
        def autocast(fn):
            def run(*args):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return fn(*args)
            return run
        try:
            result["eager_bf16_autocast"] = {"forward": rate(autocast(model.forward_and_log_det), value_t, context_t),
                                             "inverse": rate(autocast(model.inverse), z_t, context_t)}
        except Exception as error:
            result["eager_bf16_autocast"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        progress()
    # normflows' own Glow, eager only: the reference PyTorch figures found torch.compile within 2% of eager for it.
    result["normflows"] = _normflows_peer(config, value_t, rate)
    progress()
    if compile_modes:
        measure("compiled", torch.compile(model.forward_and_log_det), torch.compile(model.inverse))


def _normflows_peer(config: dict, value_t, rate: Callable) -> dict:
    """Normflows' own (unconditional) Glow at the same L, K, width and image size, when importable."""
    try:
        import normflows  # noqa: F401
    except ImportError:
        return {"skipped": "normflows is not importable"}
    import torch

    from benchmarks._normflows_glow import build_normflows_glow

    torch.manual_seed(0)
    model = build_normflows_glow(config["levels"], config["blocks"], config["hidden"], config["size"])
    model = model.to(value_t.device)
    with torch.no_grad():
        model.log_prob(value_t, None)  # ActNorm's data-dependent initialization happens on the first batch
    model.eval()
    batch = value_t.shape[0]
    result = {"implementation": "normflows.MultiscaleFlow of GlowBlock (unconditional, LU 1x1 conv)",
              "normflows": normflows.__version__ if hasattr(normflows, "__version__") else "unknown",
              "num_params": sum(p.numel() for p in model.parameters()),
              "note": "forward = log_prob(x); inverse = sample(batch), which also returns log-probabilities"}
    try:
        result["eager"] = {"forward": rate(model.log_prob, value_t, None), "inverse": rate(model.sample, batch)}
    except Exception as error:
        result["eager"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    print(f"    normflows eager: {result['eager']}", flush=True)
    return result


def bench_glow(config: dict, calls: int, repeats: int, torch_compile: bool, bf16: bool = True,
               peers: bool = True, progress: Optional[Callable[[dict], None]] = None) -> dict:
    """One ConditionalGlow: ours vs naive (float32, optionally bfloat16 networks), optionally vs torch."""
    size, batch = config["size"], config["batch"]
    rng = np.random.default_rng(3)
    value = rng.uniform(size=(batch, size, size, IMAGE_CHANNELS)).astype(np.float32)
    context = rng.normal(size=(batch, size // 2, size // 2, CONTEXT_CHANNELS)).astype(np.float32)
    z = rng.normal(size=value.shape).astype(np.float32)
    kwargs = {k: config[k] for k in ("levels", "blocks", "hidden", "context_features", "encoder_blocks")}
    entry = {"name": config["name"], "glow": kwargs, "value_shape": list(value.shape),
             "context_shape": list(context.shape), "batch": batch, "default": bool(config.get("default"))}
    dtypes = [("float32", None)] + ([("bfloat16", jnp.bfloat16)] if bf16 and config.get("bf16") else [])
    for dtype_name, dtype in dtypes:
        model = jcnf.ConditionalGlow(dtype=dtype, **kwargs)
        params = synthetic_params(model.init, jax.random.PRNGKey(0), value, context)["params"]
        ours_forward = lambda p, v, c, model=model: model.apply({"params": p}, v, c, method="forward_and_log_det")
        ours_inverse = lambda p, z, c, model=model: model.apply({"params": p}, z, c, method="inverse")
        timed = {"ours": {"forward": _timed(ours_forward, (params, value, context), batch, calls, repeats),
                          "inverse": _timed(ours_inverse, (params, z, context), batch, calls, repeats)}}
        # The naive baseline runs in float32 only: bfloat16 is compared against our own float32 and torch's.
        if dtype is None:
            naive = _naive.NaiveGlow(model)
            naive_params = _naive.naive_glow_params(model, params)
            timed["naive"] = {"forward": _timed(naive.forward_and_log_det, (naive_params, value, context), batch,
                                                calls, repeats),
                              "inverse": _timed(naive.inverse, (naive_params, z, context), batch, calls, repeats)}
        result = {label: {d: _public(r) for d, r in directions.items()} for label, directions in timed.items()}
        if dtype is None:
            # The two must compute the same map; a difference would make the comparison meaningless.
            ours_z, ours_log_det = timed["ours"]["forward"]["_compiled"](params, value, context)
            naive_z, naive_log_det = timed["naive"]["forward"]["_compiled"](naive_params, value, context)
            result["naive_max_abs_diff"] = {"z": float(jnp.max(jnp.abs(ours_z - naive_z))),
                                            "log_det": float(jnp.max(jnp.abs(ours_log_det - naive_log_det))),
                                            "log_det_scale": float(jnp.max(jnp.abs(ours_log_det)))}
            for direction in ("forward", "inverse"):
                result[f"{direction}_ratio_vs_naive"] = ratio(result["ours"][direction]["samples_per_s"],
                                                              result["naive"][direction]["samples_per_s"])
        coupling_flops = _coupling_flops(config, dtype)
        result["coupling_networks"] = {
            direction: _flop_fraction(coupling_flops, result["ours"][direction]["samples_per_s"], batch, dtype_name,
                                      peak_flops())
            for direction in ("forward", "inverse")}
        entry[dtype_name] = result
        print(f"  {config['name']} {dtype_name}: fwd {result['ours']['forward']['samples_per_s']:.0f}/s, "
              f"inv {result['ours']['inverse']['samples_per_s']:.0f}/s; ours/naive "
              f"{result.get('forward_ratio_vs_naive')}, {result.get('inverse_ratio_vs_naive')}", flush=True)
    if "bfloat16" in entry:
        entry["bf16_speedup"] = {d: ratio(entry["bfloat16"]["ours"][d]["samples_per_s"],
                                          entry["float32"]["ours"][d]["samples_per_s"]) for d in ("forward", "inverse")}
    progress = progress or (lambda entry: None)
    progress(entry)
    if peers and config.get("torch"):
        entry["torch"] = {}

        def peer_progress():
            _peer_ratios(entry)
            progress(entry)

        _torch_peer(config, value, context, z, calls, repeats, torch_compile, bool(config.get("bf16")),
                    entry["torch"], peer_progress)
        _peer_ratios(entry)
    return entry


def _peer_ratios(entry: dict) -> None:
    """Ours / peer samples per second for every peer variant measured so far."""
    peer = entry["torch"]
    ours = entry["float32"]["ours"]
    peers = {f"torch_{label}": peer.get(label, {}) for label in ("eager", "compiled")}
    peers["normflows_eager"] = peer.get("normflows", {}).get("eager", {})
    for name, measured in peers.items():
        if "forward" in measured:
            for direction in ("forward", "inverse"):
                entry[f"{direction}_ratio_vs_{name}"] = ratio(ours[direction]["samples_per_s"],
                                                              measured[direction]["samples_per_s"])
    if "bfloat16" in entry and "forward" in peer.get("eager_bf16_autocast", {}):
        for direction in ("forward", "inverse"):
            entry[f"bf16_{direction}_ratio_vs_torch_eager_bf16"] = ratio(
                entry["bfloat16"]["ours"][direction]["samples_per_s"],
                peer["eager_bf16_autocast"][direction]["samples_per_s"])


def bench_realnvp(sizes: dict, calls: int, repeats: int) -> dict:
    """ConditionalRealNVP, ours vs naive, forward_and_log_det and inverse."""
    batch = sizes["batch"]
    rng = np.random.default_rng(4)
    value = rng.normal(size=(batch, sizes["dim"])).astype(np.float32)
    context = rng.normal(size=(batch, sizes["context"])).astype(np.float32)
    model = jcnf.ConditionalRealNVP(blocks=sizes["layers"], hidden=sizes["hidden"])
    params = synthetic_params(model.init, jax.random.PRNGKey(0), value, context)["params"]
    naive = _naive.NaiveRealNVP(model)
    forward = lambda p, v, c: model.apply({"params": p}, v, c, method="forward_and_log_det")
    inverse = lambda p, z, c: model.apply({"params": p}, z, c, method="inverse")
    entry = {"realnvp": {k: sizes[k] for k in ("layers", "hidden")}, "value_shape": list(value.shape),
             "context_shape": list(context.shape), "naive_difference": _naive.DIFFERENCES["actnorm"],
             "ours": {"forward": _public(_timed(forward, (params, value, context), batch, calls, repeats)),
                      "inverse": _public(_timed(inverse, (params, value, context), batch, calls, repeats))},
             "naive": {"forward": _public(_timed(naive.forward_and_log_det, (params, value, context), batch, calls,
                                                 repeats)),
                       "inverse": _public(_timed(naive.inverse, (params, value, context), batch, calls, repeats))}}
    for direction in ("forward", "inverse"):
        entry[f"{direction}_ratio_vs_naive"] = ratio(entry["ours"][direction]["samples_per_s"],
                                                     entry["naive"][direction]["samples_per_s"])
    print(f"  realnvp: fwd x{entry['forward_ratio_vs_naive']:.2f}, inv x{entry['inverse_ratio_vs_naive']:.2f} naive",
          flush=True)
    return entry


def _summary(record: dict) -> dict:
    default = next((g for g in record["glows"] if g["default"]), None)
    summary: dict[str, Any] = {"default_glow": None if default is None else default["name"]}
    if default is None:
        return summary
    fp32 = default["float32"]
    summary.update({
        "glow_forward_ratio_vs_naive": fp32["forward_ratio_vs_naive"],
        "glow_inverse_ratio_vs_naive": fp32["inverse_ratio_vs_naive"],
        "glow_forward_samples_per_s": fp32["ours"]["forward"]["samples_per_s"],
        "glow_inverse_samples_per_s": fp32["ours"]["inverse"]["samples_per_s"],
        "glow_coupling_fraction_of_peak_forward": fp32["coupling_networks"]["forward"]["fraction_of_peak"],
    })
    for key in ("forward_ratio_vs_torch_eager", "inverse_ratio_vs_torch_eager", "forward_ratio_vs_torch_compiled",
                "inverse_ratio_vs_torch_compiled", "forward_ratio_vs_normflows_eager",
                "inverse_ratio_vs_normflows_eager", "bf16_forward_ratio_vs_torch_eager_bf16",
                "bf16_inverse_ratio_vs_torch_eager_bf16"):
        if key in default:
            summary[f"glow_{key}"] = default[key]
    if "bfloat16" in default:
        summary["glow_bf16_speedup_over_fp32"] = default["bf16_speedup"]
    return summary


def run(size: str, json_path: Optional[str], torch_compile: bool, calls: Optional[int] = None,
        repeats: Optional[int] = None, glow_names: Optional[list[str]] = None,
        bijector_names: Optional[list[str]] = None, bf16: bool = True, peers: bool = True) -> dict:
    """Runs every section at the given size, writing the JSON after each; returns the record.

    `glow_names` and `bijector_names` restrict the sections to those entries;
    `bf16=False` skips the bfloat16 runs and `peers=False` the PyTorch peer
    (the smoke test uses both to stay within seconds and without torch).
    """
    sizes = SIZES[size]
    calls, repeats = calls or sizes["calls"], repeats or sizes["repeats"]
    began = time.perf_counter()
    record: dict[str, Any] = {"benchmark": "logdet_throughput", "size": size, "calls_per_repeat": calls,
                              "repeats": repeats, "environment": environment(),
                              "naive_differences": _naive.DIFFERENCES, "bijectors": [], "glows": [],
                              "realnvp": None, "summary": {}, "complete": False}
    print(f"{record['environment']['device']} ({record['environment']['platform']}), jax {jax.__version__}, "
          f"size {size}", flush=True)
    glows = [config for config in sizes["glows"] if not glow_names or config["name"] in glow_names]
    # The headline Glow first, the rest of the Glow sweep last: a run cut short by a timeout loses the sweep's
    # tail, not the figures the summary quotes.
    sections = ([("glow", c) for c in glows if c.get("default")] + [("bijectors", None), ("realnvp", None)] +
                [("glow", c) for c in glows if not c.get("default")])
    for section, config in sections:
        print(section if config is None else f"glow {config['name']}", flush=True)
        if section == "glow":
            done = list(record["glows"])

            def progress(entry, done=done):
                record["glows"] = done + [entry]
                record["summary"] = _summary(record)
                write_json(json_path, record)

            record["glows"] = done + [bench_glow(config, calls, repeats, torch_compile, bf16, peers, progress)]
        elif section == "bijectors":
            record["bijectors"] = bench_bijectors(sizes["bijectors"], calls, repeats, bijector_names)
        else:
            record["realnvp"] = bench_realnvp(sizes["realnvp"], calls, repeats)
        record["summary"] = _summary(record)
        write_json(json_path, record)
    record["complete"] = True
    record["wall_s"] = round(time.perf_counter() - began, 1)
    write_json(json_path, record)
    print("summary:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record["summary"].items()})
    print(f"wall {record['wall_s']} s")
    return record


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true", help="small models, few repeats (< 60 s on a 2-core CPU)")
    parser.add_argument("--tiny", action="store_true",
                        help="the smallest sizes (seconds; also chosen by JCNF_BENCH_TINY=1), for smoke tests")
    parser.add_argument("--torch-compile", choices=("auto", "on", "off"), default="auto",
                        help="time torch.compile too (auto: not in --quick/--tiny, where compiling dominates)")
    parser.add_argument("--glows", nargs="*", help="only these Glow configurations, by name")
    parser.add_argument("--calls", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--fill-flops", metavar="RESULTS_JSON",
                        help="only recount the coupling FLOPs of a results file and rewrite its fractions of peak")
    args = parser.parse_args(argv)
    if args.fill_flops:
        return fill_flop_fractions(args.fill_flops)
    tiny = args.tiny or os.environ.get("JCNF_BENCH_TINY") == "1"
    size = "tiny" if tiny else "quick" if args.quick else "full"
    torch_compile = args.torch_compile == "on" or (args.torch_compile == "auto" and size == "full")
    return run(size, args.json, torch_compile, args.calls, args.repeats, args.glows)


if __name__ == "__main__":
    main(sys.argv[1:])
