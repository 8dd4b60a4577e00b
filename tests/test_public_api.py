"""The public surface: each public object has one home, and `import jcnf` stays on the model side."""

import importlib
import subprocess
import sys

import jcnf

SUBPACKAGES = ("baselines", "bijectors", "data", "dequantize", "distributions", "flows", "inverse", "metrics", "nets",
               "sharding", "train")


def test_each_public_object_has_one_home():
    homes = {}
    for name in SUBPACKAGES:
        module = importlib.import_module(f"jcnf.{name}")
        for public in getattr(module, "__all__", ()):
            obj = getattr(module, public)
            if isinstance(obj, (str, int, float)):
                continue
            homes.setdefault(id(obj), []).append(f"jcnf.{name}.{public}")
    shared = sorted(places for places in homes.values() if len(places) > 1)
    assert not shared, shared


def test_import_jcnf_loads_the_model_side_only():
    code = ("import sys, jcnf; heavy = ('orbax', 'grain', 'sklearn', 'jcnf.train', 'jcnf.inverse', 'jcnf.data');"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('orbax', 'grain', 'sklearn') "
            "or m in heavy))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert loaded == "[]", loaded


def test_lazy_subpackages_load_on_first_use_and_version_comes_from_metadata():
    assert jcnf.train.fit is importlib.import_module("jcnf.train").fit
    assert "train" in dir(jcnf)
    assert jcnf.__version__ == importlib.metadata.version("jcnf")
