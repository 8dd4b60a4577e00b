"""Experiment configs: `get_config(name)` per experiment, selected with `--config experiments/configs/X.py:NAME`."""
