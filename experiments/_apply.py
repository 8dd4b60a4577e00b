r"""The `apply` subcommand every experiment shares: a saved model on the user's own input.

    python -m experiments.superres apply --run out/superres --input photo.png --output out/photo_x2
    python -m experiments.rosenbrock apply --model out/rosenbrock/model --input y.npy --output out/y --refine 80

`--run DIR` names a directory an experiment wrote (its `model/` and
`config.json` are used); `--model PATH` names a saved model directly (the
experiment's default config then stands in for the run's, where an apply
command needs one). `--input` is an image file or a `.npy` array,
`--output` the directory the results go to; each command prints what it
wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import ml_collections
import numpy as np
from etils import epath
from PIL import Image

import jcnf
from experiments._config import default_config_file, load_config

APPLY = "apply"


@dataclass(frozen=True)
class ApplyCommand:
    """A parsed `apply` command line."""

    trained: jcnf.TrainedModel
    model_path: epath.Path
    run: Optional[epath.Path]
    input: epath.Path
    output: epath.Path
    options: argparse.Namespace


def split_apply(argv: Optional[Sequence[str]]) -> Optional[list[str]]:
    """The arguments after `apply` when the command line starts with it, else None (a training run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return argv[1:] if argv[:1] == [APPLY] else None


def parse_apply(argv: Sequence[str], experiment: str, description: str,
                add_options: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
                model_name: str = "model") -> ApplyCommand:
    """Parses `apply` arguments and loads the model.

    Args:
      argv: the arguments after `apply`.
      experiment: the experiment's name (its default config and output directory).
      description: the command's help text.
      add_options: adds the experiment's own options to the parser.
      model_name: the model's directory inside a run directory.
    """
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{experiment} {APPLY}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help=f"a directory the experiment wrote (e.g. out/{experiment}); its "
                                      f"{model_name}/ and config.json are used")
    source.add_argument("--model", help="a model directory written by jcnf.save_model")
    parser.add_argument("--input", required=True, help="the input: an image file or a .npy array")
    parser.add_argument("--output", required=True, help="the directory the results are written to")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples")
    add_options(parser)
    options = parser.parse_args(list(argv))
    run = None if options.run is None else epath.Path(options.run)
    model_path = run / model_name if run is not None else epath.Path(options.model)
    if run is not None and not run.is_dir():
        raise ValueError(f"`--run` {options.run} is not a directory; run `python -m experiments.{experiment}` "
                         f"first (it writes out/{experiment}/).")
    input_path = epath.Path(options.input)
    if not input_path.exists():
        raise ValueError(f"`--input` {options.input} does not exist.")
    trained = jcnf.load_model(model_path)
    output = epath.Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    return ApplyCommand(trained, model_path, run, input_path, output, options)


def run_config(command: ApplyCommand, experiment: str) -> ml_collections.ConfigDict:
    """The run's resolved config (its config.json); with `--model`, the experiment's default config."""
    if command.run is not None and (command.run / "config.json").exists():
        return ml_collections.ConfigDict(json.loads((command.run / "config.json").read_text()))
    return load_config(default_config_file(experiment))


def read_image(path: epath.Path, channels: int) -> np.ndarray:
    """An image file as uint8 [H, W, channels]; a ValueError when it has another number of channels."""
    try:
        with path.open("rb") as f, Image.open(f) as image:
            array = np.asarray(image)
    except OSError as error:
        raise ValueError(f"`--input` {path} is not an image file PIL can read ({error}).") from None
    array = array[..., None] if array.ndim == 2 else array
    if array.shape[-1] != channels:
        raise ValueError(f"`--input` must be a {channels}-channel image, as the model was trained on; got "
                         f"{array.shape[-1]} channel(s) (shape {array.shape}).")
    if array.dtype != np.uint8:
        raise ValueError(f"`--input` must be an 8-bit image; got dtype {array.dtype}.")
    return array


def read_array(path: epath.Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A `.npy` array of `shape` (a leading axis of 1 is dropped), float32."""
    if path.suffix != ".npy":
        raise ValueError(f"`--input` must be a .npy file holding {what} of shape {shape}; got {path.name}.")
    with path.open("rb") as f:
        array = np.load(f, allow_pickle=False)
    if array.ndim == len(shape) + 1 and array.shape[0] == 1:
        array = array[0]
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"`--input` must hold {what} of shape {tuple(shape)}; got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise ValueError(f"`--input` must hold finite numbers; got dtype {array.dtype}.")
    return array.astype(np.float32)


def write_png(path: epath.Path, image: np.ndarray) -> epath.Path:
    """Writes [H, W] or [H, W, C] values in [0, 1] (or uint8 pixels) as an 8-bit PNG."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels
    with path.open("wb") as f:
        Image.fromarray(pixels).save(f, format="png")
    return path


def write_npy(path: epath.Path, array: Any) -> epath.Path:
    """Writes an array as `.npy`."""
    with path.open("wb") as f:
        np.save(f, np.asarray(array))
    return path


def std_image(std: np.ndarray) -> np.ndarray:
    """A per-pixel std [H, W, C] as a grey image scaled to its maximum (channels averaged)."""
    grey = np.asarray(std, np.float64).mean(-1)
    peak = grey.max()
    return grey / peak if peak > 0 else grey


def report(written: Iterable[epath.Path], summary: Optional[dict] = None) -> dict:
    """Prints each written file (and a summary); returns {"written": [paths], **summary}."""
    paths = [os.fspath(path) for path in written]
    for path in paths:
        print(f"wrote {path}")
    if summary:
        print(json.dumps(summary, indent=2))
    return {"written": paths, **(summary or {})}


@dataclass(frozen=True)
class Refinement:
    """What preconditioned reverse KL needs besides the flow: the observation's forward problem and the optimizer.

    Attributes:
      forward_op: the forward operator of the observation.
      noise_std: the observation's noise standard deviation.
      log_prior: x [B, *event] -> log p(x) [B].
      num_samples: latents per step.
      learning_rate: Adam's rate.
    """

    forward_op: Any
    noise_std: float
    log_prior: Callable
    num_samples: int
    learning_rate: float


def add_posterior_options(parser: argparse.ArgumentParser, samples: int) -> None:
    """The options of the posterior apply commands: sample count and the refinement's steps."""
    parser.add_argument("--samples", type=int, default=samples, help="posterior samples drawn")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="also refine a copy of the amortized flow by preconditioned reverse KL for STEPS steps")


def posterior_apply(command: ApplyCommand, y_obs: np.ndarray, context: Any,
                    refinement: Callable[[], Refinement],
                    draw: Callable[[str, np.ndarray, np.ndarray], list] = lambda prefix, mean, std: []) -> dict:
    """Posterior samples, mean and std of the amortized flow at `context`, and optionally of its refinement.

    Writes <prefix>samples.npy [N, *event], <prefix>mean.npy and <prefix>std.npy with the prefix "" for
    the amortized flow and "refined_" for the refined one (saved in refined_model/), plus what `draw` writes.

    Args:
      command: the parsed command (`--samples`, `--refine`, `--seed`).
      y_obs: the observation.
      context: the flow's context for it, [1, ...].
      refinement: builds the refinement's problem (called only with `--refine`).
      draw: (prefix, mean, std) -> paths of extra files written.
    """
    from jcnf import inverse

    options, output = command.options, command.output
    key = jax.random.PRNGKey(options.seed)
    models = {"": command.trained}
    if options.refine:
        problem = refinement()
        trained = command.trained
        # The TrainedModel itself: fit_reverse_kl trains its flow through its standardization and bounds.
        result = inverse.fit_reverse_kl(trained, inverse.precondition(trained.params), y_obs,
                                        problem.forward_op, problem.noise_std, problem.log_prior,
                                        steps=options.refine, context=context, num_samples=problem.num_samples,
                                        learning_rate=problem.learning_rate, seed=options.seed,
                                        progress=True, log_every=max(1, options.refine // 10),
                                        model_dir=output / "refined_model")
        models["refined_"] = jcnf.TrainedModel(trained.model, result.params, standardization=trained.standardization,
                                               bounds=trained.bounds, value_shape=trained.value_shape,
                                               context_shape=trained.context_shape)
    written, summary = [], {}
    for prefix, trained in models.items():
        samples = np.asarray(trained.sample(key, context, options.samples))[:, 0]
        mean, std = samples.mean(0), samples.std(0)
        for name, array in (("samples", samples), ("mean", mean), ("std", std)):
            written.append(write_npy(output / f"{prefix}{name}.npy", array))
        written += draw(prefix, mean, std)
        # Small posteriors are shown whole; images by their averages.
        summary[(prefix or "amortized_").rstrip("_")] = (
            {"mean": mean.tolist(), "std": std.tolist()} if mean.size <= 16
            else {"mean_of_mean": float(mean.mean()), "mean_std": float(std.mean())})
    if options.refine:
        written.append(output / "refined_model")
    return report(written, summary)
