"""fit_reverse_kl on a fixed set of latents with two `jax.distributed` processes equals the one-process fit.

The processes run `_train_worker.py reverse_kl` in subprocesses. Params are
compared at 1e-5 absolute: float32 values of order 1 after four SGD steps
whose gradients are summed over two devices in a different order than on one
(the same tolerance and reason as tests/test_sharding.py).
"""

import json

import _train_worker as worker
import jax
import numpy as np

from jcnf import inverse


def test_two_processes_train_on_the_same_latents_as_one(tmp_path):
    outputs = worker.run_two_processes("reverse_kl", str(tmp_path / "p"))
    single = inverse.fit_reverse_kl(num_samples=8, **worker.reverse_kl_problem())
    expected = {jax.tree_util.keystr(path): np.asarray(leaf)
                for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(single.params))}
    start = {jax.tree_util.keystr(path): np.asarray(leaf)
             for path, leaf in jax.tree_util.tree_leaves_with_path(worker.reverse_kl_problem()["params"])}
    # The fit moved the params well beyond the tolerance, so agreement is not vacuous.
    assert max(np.abs(expected[key] - start[key]).max(initial=0.0) for key in expected) > 1e-3
    for out in outputs:
        got = dict(np.load(out + ".npz"))
        assert sorted(got) == sorted(expected)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], atol=1e-5, err_msg=key)
        with open(out) as f:
            error = json.load(f)["odd_error"]
        assert "`num_samples` (3)" in error and "(2)" in error, error
