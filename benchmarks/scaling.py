"""How a ConditionalGlow's cost grows with depth K, resolution and batch size.

Times `forward_and_log_det` (density evaluation) and `inverse` (sampling) per
call while varying one of K, image side and batch around a base
configuration, fits the exponent p of time ~ x^p on log-log axes (x = K,
pixels, batch), and draws one panel per sweep. Expected: p ~ 1 in K and in
pixels once the device is busy; p < 1 in batch while it is not (a batch that
does not fill the device costs little more than a smaller one); fixed costs
(context encoder, priors, dispatch) pull every slope below 1 at small sizes.

    python -m benchmarks.scaling --json benchmarks/results/scaling_cpu.json --png benchmarks/results/scaling_cpu.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

import jcnf
from benchmarks._common import environment, fit_log_slope, glow_inputs, median_rate, synthetic_params, write_json

# base: the configuration every sweep varies one attribute of.
SIZES = {
    "tiny": {"base": {"levels": 1, "blocks": 2, "hidden": 4, "size": 8, "batch": 2, "context_features": 2},
             "blocks": [1, 2], "size": [4, 8], "batch": [2, 4], "calls": 2, "repeats": 2},
    # A few minutes on a 2-core CPU.
    "default": {"base": {"levels": 2, "blocks": 4, "hidden": 32, "size": 16, "batch": 8, "context_features": 8},
                "blocks": [2, 4, 8, 16], "size": [8, 16, 32], "batch": [4, 8, 16, 32], "calls": 10, "repeats": 7},
    "full": {"base": {"levels": 3, "blocks": 8, "hidden": 256, "size": 32, "batch": 64, "context_features": 64},
             "blocks": [4, 8, 16], "size": [16, 32, 64], "batch": [16, 64, 256], "calls": 10, "repeats": 5},
}


def time_config(config: dict, calls: int, repeats: int) -> dict:
    """Seconds per call of forward_and_log_det and inverse for one Glow configuration."""
    model = jcnf.ConditionalGlow(levels=config["levels"], blocks=config["blocks"], hidden=config["hidden"],
                                 context_features=config["context_features"], encoder_blocks=1)
    size, batch = config["size"], config["batch"]
    value, context = glow_inputs(size, batch)
    params = synthetic_params(model.init, jax.random.PRNGKey(0), value, context)["params"]
    result = dict(config)
    for direction, method in (("forward", "forward_and_log_det"), ("inverse", "inverse")):
        start = time.perf_counter()
        compiled = jax.jit(lambda p, x, c, method=method: model.apply({"params": p}, x, c, method=method)) \
            .lower(params, value, context).compile()
        jax.block_until_ready(compiled(params, value, context))
        result[f"{direction}_compile_s"] = round(time.perf_counter() - start, 2)
        call = lambda compiled=compiled: compiled(params, value, context)
        result[f"{direction}_s_per_call"] = 1.0 / median_rate(call, calls, repeats)
    print(f"  K={config['blocks']:3} {size:3}x{size:<3} batch {batch:4}: forward "
          f"{1e3 * result['forward_s_per_call']:8.2f} ms, inverse {1e3 * result['inverse_s_per_call']:8.2f} ms",
          flush=True)
    return result


def _plot(record: dict, path: str) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"blocks": "steps per level K", "pixels": "pixels per image", "batch": "batch size"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (sweep, rows) in zip(axes, record["sweeps"].items(), strict=False):
        x = [row["x"] for row in rows]
        for direction, marker in (("forward", "o"), ("inverse", "s")):
            y = [1e3 * row[f"{direction}_s_per_call"] for row in rows]
            slope = record["slopes"][sweep][direction]
            ax.loglog(x, y, marker=marker, label=f"{direction} (slope {slope:.2f})")
        ax.set_xticks(x)  # label exactly the measured points
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(labels[sweep])
        ax.set_ylabel("ms per call")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"ConditionalGlow cost scaling on {record['environment']['device']}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--png", help="write the plot here")
    parser.add_argument("--full", action="store_true",
                        help="GPU sizes (hidden 256, L=3, K 4-16, 16-64 px, batch 16-256)")
    parser.add_argument("--tiny", action="store_true", help="seconds (also chosen by JCNF_BENCH_TINY=1)")
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny or os.environ.get("JCNF_BENCH_TINY") == "1" else "full" if args.full else "default"
    sizes = SIZES[size]
    base = sizes["base"]
    record: dict = {"benchmark": "scaling", "size": size, "base": base, "environment": environment(),
                    "sweeps": {}, "slopes": {}, "complete": False}
    began = time.perf_counter()
    print(f"{record['environment']['device']}, size {size}", flush=True)
    cache: dict[tuple, dict] = {}
    for sweep, attribute in (("blocks", "blocks"), ("pixels", "size"), ("batch", "batch")):
        rows = []
        for value in sizes[attribute]:
            config = {**base, attribute: value}
            key = tuple(sorted(config.items()))
            if key not in cache:
                cache[key] = time_config(config, sizes["calls"], sizes["repeats"])
            row = dict(cache[key])
            row["x"] = value * value if sweep == "pixels" else value
            rows.append(row)
        record["sweeps"][sweep] = rows
        record["slopes"][sweep] = {d: fit_log_slope([r["x"] for r in rows], [r[f"{d}_s_per_call"] for r in rows])
                                   for d in ("forward", "inverse")}
        write_json(args.json, record)
    record["complete"] = True
    record["wall_s"] = round(time.perf_counter() - began, 1)
    write_json(args.json, record)
    if args.png:
        _plot(record, args.png)
    print("slopes (time ~ x^p):", {s: {d: round(p, 2) for d, p in v.items()} for s, v in record["slopes"].items()})
    print(f"wall {record['wall_s']} s")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
