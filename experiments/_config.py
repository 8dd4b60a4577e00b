r"""The experiments' command line: a config file, dotted overrides, an output directory, multi-host mode.

    python -m experiments.superres --config experiments/configs/superres.py:paper \\
        --config.train.steps=1000 --out gs://bucket/superres --distributed auto

`--config PATH:NAME` loads `get_config(NAME)` from the Python file PATH (NAME
defaults to "default"); `--config.a.b=VALUE` (or `--config.a.b VALUE`) then
sets one field, parsed as the type the field already has. A key the config
does not have is an error naming it, so a typo cannot silently leave a
setting at its default. The same syntax as `ml_collections.config_flags`,
without absl's process-wide flag registry: `main(argv)` can be called many
times in one process (the tests, `experiments.main`).

Why not `ml_collections.config_flags` on a fresh `absl.flags.FlagValues`: it
would parse the overrides the same way, but absl flags have no subcommands
(`python -m experiments.superres apply ...`) and report a typo'd override as a
generic flag error rather than naming the config key.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Sequence

import ml_collections

_CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")
_PREFIX = "--config."


@dataclass(frozen=True)
class CommandLine:
    """A parsed command line: the resolved config, where outputs go, and the multi-host mode."""

    config: ml_collections.ConfigDict
    out: str
    distributed: str


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`get_config(name)` of the file in `spec` = "path/to/file.py[:name]"; a missing name is "default"."""
    path, _, name = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"`--config` must name a Python file (PATH[:NAME]); {path!r} does not exist.")
    module_spec = importlib.util.spec_from_file_location(f"_experiment_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"`--config` file {path!r} must define get_config(name).")
    return module.get_config(name or "default")


def _parse_value(key: str, text: str, current: Any) -> Any:
    """`text` as the type of the field's `current` value; a ValueError naming `key` when it is not one."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"`--config.{key}` must be true or false; got {text!r}.")
        return text.lower() in ("true", "1")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text  # a field without a value yet (a path, a name) takes a string
        raise ValueError(f"`--config.{key}` must be a {type(current).__name__}; got {text!r}.") from None
    if isinstance(current, (tuple, list)):
        value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        return type(current)(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(f"`--config.{key}` must be a {type(current).__name__}; got {text!r}.")
    return value


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets the dotted field `key` of `config` from the command-line string `text`, in place."""
    *groups, field = key.split(".")
    node = config
    for depth, group in enumerate(groups):
        if group not in node or not isinstance(node[group], ml_collections.ConfigDict):
            raise ValueError(f"Unknown config key `{'.'.join(groups[:depth + 1])}` in `--config.{key}`; "
                             f"known: {sorted(node.keys())}.")
        node = node[group]
    if field not in node or isinstance(node[field], ml_collections.ConfigDict):
        raise ValueError(f"Unknown config key `{key}` in `--config.{key}`; known at that level: "
                         f"{sorted(k for k in node.keys() if not isinstance(node[k], ml_collections.ConfigDict))}.")
    node[field] = _parse_value(key, text, node[field])


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Argv without its `--config.KEY[=VALUE]` arguments, and those as (KEY, VALUE) in order."""
    rest, overrides, index = [], [], 0
    while index < len(argv):
        argument = argv[index]
        if argument.startswith(_PREFIX):
            key, equals, value = argument[len(_PREFIX):].partition("=")
            if not equals:
                if index + 1 == len(argv):
                    raise ValueError(f"`{argument}` needs a value: `{argument}=VALUE`.")
                index, value = index + 1, argv[index + 1]
            overrides.append((key, value))
        else:
            rest.append(argument)
        index += 1
    return rest, overrides


def parse_command_line(argv: Sequence[str] | None, experiment: str, description: str) -> CommandLine:
    """The config, output directory and multi-host mode of one experiment's command line.

    Args:
      argv: the arguments (None: sys.argv[1:]).
      experiment: the experiment's name: its default config is
        experiments/configs/<experiment>.py:default, its default output out/<experiment>.
      description: the script's usage text, shown by --help.

    Returns:
      The parsed CommandLine; its config is locked (no new keys).
    """
    import sys

    rest, overrides = _split_overrides(sys.argv[1:] if argv is None else list(argv))
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(_CONFIG_DIR, f"{experiment}.py"),
                        help="PATH[:NAME]: get_config(NAME) of the config file PATH (NAME default|smoke|paper); "
                             "then --config.KEY=VALUE overrides one field")
    parser.add_argument("--out", default=os.path.join("out", experiment),
                        help="output directory; a gs:// path works (etils.epath)")
    parser.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                        help="auto: join a multi-process job when the environment describes one; on: always "
                             "join (jax.distributed detects the cluster); off: one process")
    args = parser.parse_args(rest)
    config = load_config(args.config)
    for key, value in overrides:
        apply_override(config, key, value)
    config.lock()
    return CommandLine(config=config, out=args.out, distributed=args.distributed)
