"""Super-resolution x2 with a conditional flow against a factorized baseline (Winkler et al. 2019).

p(high-res | low-res) is modelled by a ConditionalGlow (context encoder,
uniform or variational dequantization) and by the paper's baseline, a
factorized discretized-logistic mixture per sub-pixel from the same kind of
context encoder, with about the same parameter count, trained on the same
patches for the same number of steps. By default both models predict the
residual from the nearest-neighbour upsampled low-res image
(`SuperResolutionGlow`, the baseline's `context_skip`); `--no-context-skip`
turns that off for both. On held-out photographs it reports test bits/dim
of both (the CNF's is the dequantization bound, an upper bound on its
discrete bits/dim; the baseline's is exact), PSNR/SSIM of CNF samples at
temperatures {0, 0.5, 0.8, 1.0}, of the baseline's mode and of bicubic
upsampling, and draws them side by side (samples.png).

    python -m experiments.superres --out out/superres              # CPU default, minutes
    python -m experiments.superres --data tfds --tfds-name downsampled_imagenet/32x32 \
        --data-dir ~/tensorflow_datasets --levels 3 --flow-steps 8 --hidden 512 \
        --context-features 128 --encoder-blocks 16 --batch 64 --steps 200000 --lr 2e-4   # paper size
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jcnf
from experiments._figures import image_grid
from jcnf import data as jdata
from jcnf import metrics
from jcnf.baselines import DiscretizedLogisticBaseline
from jcnf.dequantize import VariationalDequantizer
from jcnf.train import (count_params, default_optimizer, fit, mle_eval_step, no_dequantization, sample_step,
                        uniform_dequantization)

TEMPERATURES = (0.0, 0.5, 0.8, 1.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/superres")
    parser.add_argument("--data", choices=("photos", "folder", "tfds"), default="photos",
                        help="embedded sample photographs, a folder of images (--folder), or tfds (--tfds-name)")
    parser.add_argument("--folder", help="training images folder (--data folder)")
    parser.add_argument("--test-folder", help="held-out images folder (--data folder)")
    parser.add_argument("--tfds-name", default="downsampled_imagenet/32x32")
    parser.add_argument("--data-dir", help="tfds data_dir where the dataset was prepared")
    parser.add_argument("--patch", type=int, default=32, help="high-resolution patch side")
    parser.add_argument("--factor", type=int, default=2, help="downsampling factor (2 or 4)")
    parser.add_argument("--train-patches", type=int, default=4096)
    parser.add_argument("--test-patches", type=int, default=128)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--flow-steps", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--context-features", type=int, default=32)
    parser.add_argument("--encoder-blocks", type=int, default=2)
    parser.add_argument("--no-context-skip", dest="context_skip", action="store_false",
                        help="model the value itself, not its residual from the upsampled context (both models)")
    parser.add_argument("--mixtures", type=int, default=5, help="logistic components of the baseline")
    parser.add_argument("--dequantization", choices=("uniform", "variational"), default="uniform")
    parser.add_argument("--figure-examples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a seconds-long configuration for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.patch, args.train_patches, args.test_patches, args.steps, args.batch = 16, 64, 8, 4, 4
        args.levels, args.flow_steps, args.hidden, args.context_features, args.encoder_blocks = 1, 1, 8, 8, 1
        args.mixtures, args.figure_examples = 2, 2
    return args


def load_patches(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Train and test high-resolution patches, uint8 [N, P, P, 3], from disjoint images."""
    rng = np.random.default_rng(args.seed)
    if args.data == "tfds":
        train = jdata.load_tfds_images(args.tfds_name, "train", args.data_dir, max_examples=args.train_patches)
        test = jdata.load_tfds_images(args.tfds_name, "validation", args.data_dir, max_examples=args.test_patches)
        if train.shape[1] != args.patch:
            raise ValueError(f"`--patch` {args.patch} must match the dataset's image size {train.shape[1]}.")
        return train, test
    if args.data == "folder":
        if not args.folder or not args.test_folder:
            raise ValueError("`--data folder` needs `--folder` and `--test-folder` (different images).")
        train_photos, test_photos = jdata.load_image_folder(args.folder), jdata.load_image_folder(args.test_folder)
    else:
        train_photos, test_photos = jdata.load_sample_photos("train"), jdata.load_sample_photos("test")
    train = jdata.random_patches(train_photos, args.patch, args.train_patches, rng)
    test = jdata.grid_patches(test_photos, args.patch)
    test = test[rng.permutation(len(test))[:args.test_patches]]
    return train, test


def matched_baseline(args: argparse.Namespace, target: int, example: dict) -> DiscretizedLogisticBaseline:
    """The baseline whose head width gives the parameter count closest to `target` (bisection)."""
    def make(hidden: int) -> DiscretizedLogisticBaseline:
        return DiscretizedLogisticBaseline(hidden=hidden, head_blocks=2, num_mixtures=args.mixtures,
                                           context_features=args.context_features,
                                           encoder_blocks=args.encoder_blocks, context_skip=args.context_skip)

    def size(hidden: int) -> int:
        shapes = jax.eval_shape(make(hidden).init, jax.random.PRNGKey(0), example["value"], example["context"])
        return count_params(shapes["params"])

    low, high = 1, 4 * max(args.hidden, 8)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if size(middle) <= target else (low, middle)
    return make(min((low, high), key=lambda h: abs(size(h) - target)))


def test_bits_per_dim(eval_step, state, pairs: dict, batch: int) -> float:
    """Mean test bits/dim over full batches of the test pairs."""
    count = (len(pairs["value"]) // batch) * batch
    if count == 0:
        raise ValueError(f"need at least one full batch of test pairs: --test-patches ({len(pairs['value'])}) "
                         f"< --batch ({batch}).")
    # Device scalars, fetched once at the end.
    values = [eval_step(state, {k: v[i:i + batch] for k, v in pairs.items()})["bits_per_dim"]
              for i in range(0, count, batch)]
    return float(jnp.mean(jnp.stack(values)))


def image_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"psnr": float(jnp.mean(metrics.psnr(predicted, truth))),
            "ssim": float(jnp.mean(metrics.ssim(predicted, truth)))}


def draw(path: str, columns: dict[str, np.ndarray], examples: int) -> None:
    """One row per example, one column per entry of `columns` (title -> images [N, H, W, C])."""
    image_grid([[(images[row], title if row == 0 else "") for title, images in columns.items()]
                for row in range(examples)], path, panel_size=(1.6, 1.6), dpi=120)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    train_patches, test_patches = load_patches(args)
    test = {k: np.asarray(v) for k, v in jax.jit(lambda x: jdata.make_pairs(x, args.factor))(test_patches).items()}
    batches = lambda seed: jdata.SuperResolutionBatches(train_patches, args.batch, args.factor, seed=seed)  # noqa: E731
    example = {k: v[:args.batch] for k, v in test.items()}

    glow = jcnf.flows.SuperResolutionGlow if args.context_skip else jcnf.ConditionalGlow
    flow = glow(levels=args.levels, steps=args.flow_steps, hidden=args.hidden,
                                context_features=args.context_features, encoder_blocks=args.encoder_blocks)
    if args.dequantization == "variational":
        dequantizer = VariationalDequantizer(levels=1, steps=2, hidden=max(args.hidden // 2, 8),
                                             context_features=max(args.context_features // 2, 8))
    else:
        dequantizer = uniform_dequantization(jdata.NUM_BINS)
    flow_size = count_params(jax.eval_shape(flow.init, jax.random.PRNGKey(0), example["value"],
                                            example["context"])["params"])
    baseline = matched_baseline(args, flow_size, example)

    results: dict = {"config": vars(args), "device": str(jax.devices()[0]),
                     "train_patches": int(len(train_patches)), "test_patches": int(len(test_patches))}
    trained = {}
    for name, model, dq in (("cnf", flow, dequantizer), ("baseline", baseline, no_dequantization)):
        clock = time.time()
        optimizer = default_optimizer(args.lr, clip_norm=1.0, warmup=min(50, args.steps // 10),
                                      total_steps=args.steps + 1)
        state, history = fit(model, batches(args.seed), args.steps, optimizer=optimizer, dequantizer=dq,
                             seed=args.seed, log_every=max(args.steps // 10, 1),
                             metrics_path=os.path.join(args.out, f"{name}_metrics.jsonl"))
        trained[name] = state
        results[name] = {"params": count_params(state.params["flow"]),
                         "params_dequantizer": count_params(state.params.get("dequantizer", {})),
                         "train_seconds": time.time() - clock,
                         "train_bits_per_dim_last": history[-1]["bits_per_dim"],
                         "test_bits_per_dim": test_bits_per_dim(mle_eval_step(model, dequantizer=dq), state, test,
                                                                args.batch)}

    truth = test["value"]
    rng = jax.random.PRNGKey(args.seed + 1)
    columns = {f"low-res /{args.factor}": np.asarray(jax.image.resize(test["context"], truth.shape, "nearest")),
               "bicubic": np.asarray(jdata.bicubic_upsample(test["context"], args.factor))}
    results["bicubic"] = image_scores(columns["bicubic"], truth)
    sample_baseline = sample_step(baseline)
    columns["baseline mode"] = np.asarray(sample_baseline(trained["baseline"], rng, test["context"], 0.0))
    results["baseline"].update(mode=image_scores(columns["baseline mode"], truth))
    sample_flow = sample_step(flow)
    results["cnf"]["samples"] = {}
    for temperature in TEMPERATURES:
        # A flow sample is a dequantized value; its 8-bit image is the bin it falls in.
        sample = np.asarray(jdata.quantize(sample_flow(trained["cnf"], rng, test["context"], temperature)))
        columns[f"CNF T={temperature:g}"] = sample
        results["cnf"]["samples"][f"{temperature:g}"] = image_scores(sample, truth)
    columns["ground truth"] = truth
    results["cnf_beats_baseline_bpd"] = results["cnf"]["test_bits_per_dim"] < results["baseline"]["test_bits_per_dim"]
    results["total_seconds"] = time.time() - start
    draw(os.path.join(args.out, "samples.png"), columns, min(args.figure_examples, len(truth)))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))
    return results


if __name__ == "__main__":
    main()
