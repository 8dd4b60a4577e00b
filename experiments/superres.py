"""Super-resolution x2 with a conditional flow against a factorized baseline (Winkler et al. 2019).

p(high-res | low-res) is modelled by a ConditionalGlow (context encoder,
uniform or variational dequantization) and by the paper's baseline, a
factorized discretized-logistic mixture per sub-pixel from the same kind of
context encoder, with about the same parameter count, trained on the same
patches for the same number of steps. By default both models predict the
residual from the upsampled low-res image (`SuperResolutionGlow`, the
baseline's `context_skip`): bicubic with one back-projection step, so every
block keeps its low-res mean (`model.skip`, or "nearest"); `model.context_skip`
false turns that off for both. On held-out photographs it reports test bits/dim
of both (the CNF's is the dequantization bound, an upper bound on its
discrete bits/dim; the baseline's is exact), PSNR/SSIM of CNF samples at
temperatures {0, 0.5, 0.8, 1.0}, of the baseline's mode and of bicubic
upsampling, and draws them side by side (samples.png).

    python -m experiments.superres --out out/superres              # CPU default, minutes
    python -m experiments.superres --config experiments/configs/superres.py:paper \
        --config.data.tfds_dir=~/tensorflow_datasets --out out/superres_paper   # paper size, ImageNet32
    python -m experiments.superres apply --run out/superres --input photo.png --output out/photo_x2

The trained flow is saved in OUT/model/. `apply` super-resolves a photograph of any size (the
low-resolution input; the output is `factor` times larger): the temperature-0 image mode_T0.png,
`--samples` samples at `--temperature` (sample_*.png) and the per-pixel std of those samples
(std.png scaled to its maximum, std.npy in [0, 1] units). Large photographs go through the flow in
tiles of `--tile` input pixels, each with a margin of context around it, so memory stays bounded.

Settings: experiments/configs/superres.py (default, paper, smoke); `--config.KEY=VALUE` overrides one.
"""

from __future__ import annotations

import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from PIL import Image

import jcnf
from experiments import _hosts
from experiments._apply import parse_apply, read_image, report, split_apply, std_image, write_npy, write_png
from experiments._config import parse_command_line
from experiments._figures import image_grid
from jcnf import data as jdata
from jcnf import metrics
from jcnf._progress import progress_bar
from jcnf.baselines import DiscretizedLogisticBaseline
from jcnf.dequantize import VariationalDequantizer, no_dequantization, uniform_dequantization
from jcnf.train import count_params, default_optimizer, fit, mle_eval_step, sample_step

TEMPERATURES = (0.0, 0.5, 0.8, 1.0)


def _image_only(element: dict) -> dict:
    # A tfds example may carry labels and ids: the pairs are made from the image alone.
    return {"image": element["image"]}


class _Drawn:
    """A random-access source whose entry i is entry `which[i]` of `images` (photographs drawn with repeats)."""

    def __init__(self, images, which: np.ndarray):
        self._images, self._which = images, which

    def __len__(self) -> int:
        return len(self._which)

    def __getitem__(self, index: int) -> dict:
        return self._images[int(self._which[index])]


def _drawn_by_area(images, sizes: list[tuple[int, int]], patch: int, count: int, seed: int) -> _Drawn:
    """`count` draws of `images`, each in proportion to its number of `patch` crop positions."""
    small = [i for i, (height, width) in enumerate(sizes) if min(height, width) < patch]
    if small:
        raise ValueError(f"`data.patch`={patch} is larger than training image(s) {small} of sizes "
                         f"{[sizes[i] for i in small]}.")
    # Weighting by crop positions makes every position of every photograph equally likely.
    positions = np.array([(h - patch + 1) * (w - patch + 1) for h, w in sizes], np.float64)
    which = np.random.default_rng(seed).choice(len(sizes), size=count, p=positions / positions.sum())
    return _Drawn(images, which)


def train_source(data, seed: int):
    """The training images as a grain random-access source of {"image": uint8 [H, W, C]} (`data`: config.data).

    photos/folder: an epoch is `data.train_patches` photographs drawn (with
    repeats, fixed by `seed`) in proportion to their crop positions; the crop
    itself is drawn by the pipeline. tfds: the first `data.train_patches`
    examples of the prepared train split, read lazily.
    """
    if data.source not in ("photos", "folder", "tfds"):
        raise ValueError(f"`data.source` must be 'photos', 'folder' or 'tfds'; got {data.source!r}.")
    if data.source == "tfds":
        return jdata.tfds_source(data.tfds_name, f"train[:{data.train_patches}]", data.tfds_dir or None)
    if data.source == "folder":
        if not data.train_folder or not data.test_folder:
            raise ValueError("`data.source` 'folder' needs `data.train_folder` and `data.test_folder` "
                             "(different images).")
        try:
            images = jdata.ImageFolderSource(data.train_folder)
        except ValueError as error:
            raise ValueError(f"`data.train_folder`: {error}") from error
        sizes = []
        for path in images.paths:
            with Image.open(path) as image:  # reads the header only
                sizes.append((image.height, image.width))
    else:
        images = [{"image": photo} for photo in jdata.load_sample_photos("train")]
        sizes = [item["image"].shape[:2] for item in images]
    return _drawn_by_area(images, sizes, data.patch, data.train_patches, seed)


def training_batches(source, data, batch: int, seed: int, process_index: int | None = None,
                     process_count: int | None = None):
    """This process's rows of every global batch of training pairs, as a resumable grain iterator.

    Pipeline: `source` (`train_source`) -> shuffle -> random `data.patch` crop -> x`data.factor`
    area-downsampled pair {"value": [B/P, p, p, C], "context": [B/P, p/f, p/f, C]},
    P = process_count (default `jax.process_count()`).
    """
    count = jax.process_count() if process_count is None else process_count
    if batch % count:
        raise ValueError(f"`train.batch` ({batch}) must be divisible by the number of processes ({count}): each "
                         "process reads train.batch / process_count rows of every global batch.")
    return jdata.grain_batches(source, batch, seed=seed,
                               transforms=[_image_only, jdata.random_crop(data.patch),
                                           jdata.downsample_pair(data.factor)],
                               process_index=process_index, process_count=process_count)


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    if min(image.shape[:2]) < size:
        raise ValueError(f"`data.patch`={size} is larger than a test image of shape {tuple(image.shape)}.")
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return image[top:top + size, left:left + size]


def load_test_patches(data, seed: int) -> np.ndarray:
    """Held-out high-resolution patches, uint8 [N, P, P, 3], from images never trained on (`data`: config.data).

    photos/folder: grid tiles of the test photographs, `data.test_patches` of
    them at random; tfds: centre crops of the first `data.test_patches`
    validation images. Every process holds them all (evaluation is global).
    """
    if data.source == "tfds":
        source = jdata.tfds_source(data.tfds_name, f"validation[:{data.test_patches}]", data.tfds_dir or None)
        return np.stack([_center_crop(np.asarray(source[i]["image"]), data.patch) for i in range(len(source))])
    if data.source == "folder":
        try:
            photos = jdata.load_image_folder(data.test_folder)
        except ValueError as error:
            raise ValueError(f"`data.test_folder`: {error}") from error
    else:
        photos = jdata.load_sample_photos("test")
    test = jdata.grid_patches(photos, data.patch)
    return test[np.random.default_rng(seed).permutation(len(test))[:data.test_patches]]


def last_logged(history: list[dict], metrics_path: str, key: str) -> float:
    """`key` of the last logged record: from this run's history, else (a run resumed at its end) the metrics file.

    The file exists where process 0 wrote it; elsewhere the figure is NaN (that process writes nothing).
    """
    if history:
        return history[-1][key]
    path = epath.Path(metrics_path)
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return json.loads(lines[-1]).get(key, float("nan")) if lines else float("nan")


def matched_baseline(model, target: int, example: dict) -> DiscretizedLogisticBaseline:
    """The baseline whose head width gives the parameter count closest to `target` (bisection).

    `model` is config.model.
    """
    def make(hidden: int) -> DiscretizedLogisticBaseline:
        return DiscretizedLogisticBaseline(hidden=hidden, head_blocks=2, num_mixtures=model.mixtures,
                                           context_features=model.context_features,
                                           encoder_blocks=model.encoder_blocks, encoder=model.encoder,
                                           context_skip=model.context_skip, skip=model.skip)

    def size(hidden: int) -> int:
        shapes = jax.eval_shape(make(hidden).init, jax.random.PRNGKey(0), example["value"], example["context"])
        return count_params(shapes["params"])

    low, high = 1, 4 * max(model.hidden, 8)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if size(middle) <= target else (low, middle)
    return make(min((low, high), key=lambda h: abs(size(h) - target)))


def test_bits_per_dim(eval_step, state, pairs: dict, batch: int) -> float:
    """Mean test bits/dim over full batches of the test pairs."""
    count = (len(pairs["value"]) // batch) * batch
    if count == 0:
        raise ValueError(f"need at least one full batch of test pairs: `data.test_patches` ({len(pairs['value'])}) "
                         f"< `train.batch` ({batch}).")
    # Device scalars, fetched once at the end.
    values = [eval_step(state, {k: v[i:i + batch] for k, v in pairs.items()})["bits_per_dim"]
              for i in range(0, count, batch)]
    return float(jnp.mean(jnp.stack(values)))


def image_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean PSNR and SSIM of host images [N, H, W, C] over the finite ones, and how many were not ("non_finite")."""
    scores = metrics.mean_image_scores(predicted, truth)
    return {"psnr": float(scores["psnr"]), "ssim": float(scores["ssim"]), "non_finite": int(scores["non_finite"])}


def claims(results: dict) -> dict[str, dict]:
    """The paper's claims checked on this run's figures: {claim_id: {"claim", "holds", "evidence"}}."""
    cnf, baseline, bicubic = results["cnf"], results["baseline"], results["bicubic"]
    samples = cnf["samples"]
    psnr = [samples[f"{t:g}"]["psnr"] for t in TEMPERATURES]
    return {
        "cnf_bits_per_dim_below_baseline": {
            "claim": "A conditional flow of p(high-res | low-res) has lower test bits/dim than a factorized "
                     "discretized-logistic baseline of the same size.",
            "holds": cnf["test_bits_per_dim"] < baseline["test_bits_per_dim"],
            "evidence": f"CNF {cnf['test_bits_per_dim']:.2f} (dequantization bound) vs baseline "
                        f"{baseline['test_bits_per_dim']:.2f} bits/dim on {results['test_patches']} held-out tiles"},
        "cnf_t0_psnr_at_least_bicubic": {
            "claim": "The flow's temperature-0 sample is at least as faithful as bicubic upsampling (PSNR).",
            "holds": psnr[0] >= bicubic["psnr"],
            "evidence": f"CNF T=0 {psnr[0]:.1f} dB vs bicubic {bicubic['psnr']:.1f} dB "
                        f"(SSIM {samples['0']['ssim']:.3f} vs {bicubic['ssim']:.3f})"},
        "cnf_t0_psnr_above_baseline_mode": {
            "claim": "The flow's temperature-0 sample is closer to the truth than the factorized baseline's mode.",
            "holds": psnr[0] > baseline["mode"]["psnr"],
            "evidence": f"CNF T=0 {psnr[0]:.1f} dB vs baseline mode {baseline['mode']['psnr']:.1f} dB"},
        "lower_temperature_higher_psnr": {
            "claim": "Lowering the sampling temperature trades diversity for fidelity: PSNR rises as T falls.",
            "holds": all(a > b for a, b in zip(psnr[:-1], psnr[1:], strict=True)),
            "evidence": "PSNR at T = " + " / ".join(f"{t:g}" for t in TEMPERATURES) + ": "
                        + " / ".join(f"{p:.1f}" for p in psnr) + " dB"},
    }


def draw(path, columns: dict[str, np.ndarray], examples: int) -> None:
    """One row per example, one column per entry of `columns` (title -> images [N, H, W, C])."""
    image_grid([[(images[row], title if row == 0 else "") for title, images in columns.items()]
                for row in range(examples)], path, panel_size=(1.6, 1.6), dpi=120)


def _apply_options(parser) -> None:
    parser.add_argument("--samples", type=int, default=4, help="samples drawn at --temperature")
    parser.add_argument("--temperature", type=float, default=0.8, help="latent temperature of the samples")
    parser.add_argument("--tile", type=int, default=64, help="tile side in input pixels")
    parser.add_argument("--tile-batch", type=int, default=4, help="tiles per call into the flow")


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def apply(argv: list[str]) -> dict:
    """Super-resolves the photograph of `--input` with the saved flow, tile by tile."""
    command = parse_apply(argv, "superres", __doc__, _apply_options)
    trained, options = command.trained, command.options
    value_shape, context_shape = trained.value_shape, trained.context_shape
    if len(value_shape) != 3 or len(context_shape) != 3 or not hasattr(trained.model, "levels"):
        raise ValueError(f"The model at {command.model_path} is not an image flow of a low-resolution image "
                         f"(value {value_shape}, context {context_shape}).")
    factor = value_shape[0] // context_shape[0]
    photo = read_image(command.input, value_shape[-1])
    height, width = photo.shape[:2]
    # Tiles are cut from the low-resolution input: their sides times `factor` must divide by 2^levels.
    multiple = 2 ** trained.model.levels // math.gcd(2 ** trained.model.levels, factor)
    margin = _round_up(4, multiple)  # input pixels of context around every tile, against seams
    tile = max(multiple, options.tile // multiple * multiple)
    core = (min(_round_up(height, multiple), tile), min(_round_up(width, multiple), tile))
    grid = (-(-height // core[0]), -(-width // core[1]))
    low = photo.astype(np.float32) / jdata.NUM_BINS  # the training pairs' units, k / 256
    padded = np.pad(low, ((margin, margin + grid[0] * core[0] - height), (margin, margin + grid[1] * core[1] - width),
                          (0, 0)), mode="edge")
    window = (core[0] + 2 * margin, core[1] + 2 * margin)
    inner = tuple(slice(margin * factor, (margin + side) * factor) for side in core)  # a tile's output without margin
    positions = [(row * core[0], column * core[1]) for row in range(grid[0]) for column in range(grid[1])]
    canvas_shape = (grid[0] * core[0] * factor, grid[1] * core[1] * factor, value_shape[-1])
    mode = np.zeros(canvas_shape, np.uint8)
    samples = np.zeros((options.samples,) + canvas_shape, np.uint8)
    std = np.zeros(canvas_shape, np.float32)
    finite = True
    batch = min(options.tile_batch, len(positions))
    key = jax.random.PRNGKey(options.seed)
    # A bar on a terminal; in a log, one line per batch of tiles.
    progress = progress_bar(len(positions), log_every=batch, desc="tiles")
    for start in range(0, len(positions), batch):
        chunk = positions[start:start + batch]
        context = np.stack([padded[y:y + window[0], x:x + window[1]] for y, x in chunk])
        # The last batch is filled up with copies: one shape, one compilation.
        context = np.concatenate([context, np.repeat(context[-1:], batch - len(chunk), axis=0)])
        tile_key = jax.random.fold_in(key, start)
        tile_mode = np.asarray(trained.sample(tile_key, context, 1, 0.0))[0]
        tile_samples = np.asarray(trained.sample(tile_key, context, options.samples, options.temperature))
        finite = finite and bool(np.isfinite(tile_mode).all() and np.isfinite(tile_samples).all())
        for index, (y, x) in enumerate(chunk):
            target = (slice(y * factor, (y + core[0]) * factor), slice(x * factor, (x + core[1]) * factor))
            mode[target] = _to_pixels(tile_mode[index][inner])
            samples[(slice(None),) + target] = _to_pixels(tile_samples[:, index][(slice(None),) + inner])
            std[target] = tile_samples[:, index][(slice(None),) + inner].std(0)
        progress.update(len(chunk))
    progress.close()
    out_h, out_w = height * factor, width * factor
    written = [write_png(command.output / "mode_T0.png", mode[:out_h, :out_w])]
    written += [write_png(command.output / f"sample_{i:02d}.png", sample[:out_h, :out_w])
                for i, sample in enumerate(samples)]
    written += [write_png(command.output / "std.png", std_image(std[:out_h, :out_w])),
                write_npy(command.output / "std.npy", std[:out_h, :out_w])]
    return report(written, {"input_size": [height, width], "output_size": [out_h, out_w], "factor": factor,
                            "tiles": len(positions), "temperature": options.temperature, "finite": finite})


def _to_pixels(values: np.ndarray) -> np.ndarray:
    """A flow sample (dequantized, in [0, 1)) to its 8-bit image: the bin it falls in."""
    return np.asarray(jdata.quantize(np.nan_to_num(values)) * jdata.NUM_BINS).astype(np.uint8)


def main(argv: list[str] | None = None) -> dict:
    apply_argv = split_apply(argv)
    if apply_argv is not None:
        return apply(apply_argv)
    command = parse_command_line(argv, "superres", __doc__)
    _hosts.start(command.distributed)
    config = command.config
    data, model_config, train = config.data, config.model, config.train
    out = _hosts.output_dir(command.out)
    start = time.time()
    source = train_source(data, config.seed)
    test_patches = load_test_patches(data, config.seed)
    # Device arrays holding the global value on every process: the mesh-sharded steps split them (host numpy
    # would be taken as this process's share of the batch).
    test = jax.jit(lambda x: jdata.make_pairs(x, data.factor))(test_patches)
    # Both models see the same stream: one pipeline per model from the same seed.
    batches = lambda: training_batches(source, data, train.batch, config.seed)  # noqa: E731
    example = {k: v[:train.batch] for k, v in test.items()}

    glow = jcnf.flows.SuperResolutionGlow if model_config.context_skip else jcnf.ConditionalGlow
    skip = {"skip": model_config.skip} if model_config.context_skip else {}
    flow = glow(levels=model_config.levels, blocks=model_config.blocks, hidden=model_config.hidden,
                context_features=model_config.context_features, encoder_blocks=model_config.encoder_blocks,
                encoder=model_config.encoder, **skip)
    if model_config.dequantization not in ("uniform", "variational"):
        raise ValueError(f"`model.dequantization` must be 'uniform' or 'variational'; got "
                         f"{model_config.dequantization!r}.")
    if model_config.dequantization == "variational":
        dequantizer = VariationalDequantizer(levels=1, blocks=2, hidden=max(model_config.hidden // 2, 8),
                                             context_features=max(model_config.context_features // 2, 8))
    else:
        dequantizer = uniform_dequantization(jdata.NUM_BINS)
    flow_size = count_params(jax.eval_shape(flow.init, jax.random.PRNGKey(0), example["value"],
                                            example["context"])["params"])
    baseline = matched_baseline(model_config, flow_size, example)

    results: dict = {"config": config.to_dict(), "device": str(jax.devices()[0]),
                     "train_patches": len(source), "test_patches": int(len(test_patches))}
    trained, seconds = {}, {}
    for name, model, dq in (("cnf", flow, dequantizer), ("baseline", baseline, no_dequantization)):
        clock = time.time()
        optimizer = default_optimizer(train.lr, clip_norm=1.0, warmup=min(50, train.steps // 10),
                                      total_steps=train.steps + 1)
        metrics_path = _hosts.metrics_file(out, name)
        # A rerun with the same --out resumes from the newest checkpoint (model, optimizer and pipeline position).
        state, history = fit(model, batches(), train.steps, optimizer=optimizer, dequantizer=dq,
                             seed=config.seed, log_every=max(train.steps // 10, 1), metrics_path=metrics_path,
                             checkpoint_dir=_hosts.checkpoint_dir(out, name),
                             checkpoint_every=train.checkpoint_every,
                             model_dir=str(out / "model") if name == "cnf" else None)
        trained[name] = state
        seconds[f"{name}_train"] = time.time() - clock
        results[name] = {"params": count_params(state.params["flow"]),
                         "params_dequantizer": count_params(state.params.get("dequantizer", {})),
                         "train_bits_per_dim_last": last_logged(history, metrics_path, "bits_per_dim"),
                         "test_bits_per_dim": test_bits_per_dim(mle_eval_step(model, dequantizer=dq), state, test,
                                                                train.batch)}

    truth = np.asarray(test["value"])
    rng = jax.random.PRNGKey(config.seed + 1)
    columns = {f"low-res /{data.factor}": np.asarray(jax.image.resize(test["context"], truth.shape, "nearest")),
               "bicubic": np.asarray(jdata.bicubic_upsample(test["context"], data.factor))}
    results["bicubic"] = image_scores(columns["bicubic"], truth)
    sample_baseline = sample_step(baseline)
    # Samples are split over the global mesh: gathered from every process before any host-side score.
    columns["baseline mode"] = _hosts.to_host(sample_baseline(trained["baseline"], rng, test["context"], 0.0))
    results["baseline"].update(mode=image_scores(columns["baseline mode"], truth))
    sample_flow = sample_step(flow)
    results["cnf"]["samples"] = {}
    for temperature in TEMPERATURES:
        # A flow sample is a dequantized value; its 8-bit image is the bin it falls in.
        sample = _hosts.to_host(jdata.quantize(sample_flow(trained["cnf"], rng, test["context"], temperature)))
        columns[f"CNF T={temperature:g}"] = sample
        results["cnf"]["samples"][f"{temperature:g}"] = image_scores(sample, truth)
    columns["ground truth"] = truth
    results["claims"] = claims(results)
    seconds["total"] = time.time() - start
    results["seconds"] = seconds  # timings under one key: the multi-process comparison skips them
    draw(out / "samples.png", columns, min(config.eval.figure_examples, len(truth)))
    _hosts.write_outputs(out, config, results)
    if _hosts.is_writer():
        print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))
    return results


if __name__ == "__main__":
    _hosts.run_script(main)
