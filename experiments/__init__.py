"""Experiment scripts of jcnf: one per paper experiment, plus the main job."""
