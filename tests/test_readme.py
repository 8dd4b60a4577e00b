"""The README's example runs as written (docs that show a working call)."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_learns(capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["samples"].shape == (256, 2)
    assert "sample shape (256, 2)" in capsys.readouterr().out

    # The noise must be independent of the context, or the value is a function of the context and there is
    # no conditional spread to learn. 256 pairs: a sample correlation's standard error is 1/16, and 0.25 is 4 of them.
    context, noise = np.asarray(namespace["context"]), np.asarray(namespace["noise"])
    cross = np.corrcoef(context.T, noise.T)[:2, 2:]
    assert np.abs(cross).max() < 0.25, cross

    # value | context ~ N((c0, -c0), 0.1^2 I): its conditional entropy is 2 * 0.5 * log(2 pi e 0.01) = -1.77 nats.
    # The training NLL on 256 pairs sits somewhat below it (the flow fits the sample); far below (< -3) would mean
    # the value is nearly determined by the context.
    assert -3.0 < float(namespace["nll"]) < 0.0, float(namespace["nll"])

    # For one context inside the training range, samples at temperature 1 spread like the true conditional:
    # mean (c0, -c0) and std 0.1 per coordinate. 4000 samples estimate the std to 1%; the tolerances (0.1 on the
    # mean, one conditional std; 0.06-0.15 on the std) allow the fit of a small flow on 256 pairs in 300 steps.
    model, params = namespace["model"], namespace["params"]
    for c0, c1 in ((0.5, -1.0), (-1.0, 0.3)):
        given = jnp.tile(jnp.array([[c0, c1]]), (4000, 1))
        samples = np.asarray(model.apply({"params": params}, jax.random.PRNGKey(7), given, method="sample"))
        np.testing.assert_allclose(samples.mean(0), [c0, -c0], atol=0.1)
        assert np.all((samples.std(0) > 0.06) & (samples.std(0) < 0.15)), samples.std(0)


def test_readme_training_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(block for block in blocks if "train.fit(" in block)
    monkeypatch.chdir(tmp_path)  # the example writes runs/ relative to the working directory
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    # The images are uniform over 256^D discrete values, so no model's expected
    # NLL is below 8 bits/dim: a figure under 7.9 would mean a wrong
    # dequantization correction; above 9 means the training went wrong.
    assert 7.9 < namespace["bpd"] < 9.0, namespace["bpd"]
    assert int(namespace["result"].state.step) == 60
    assert (tmp_path / "runs" / "metrics.jsonl").read_text().count("\n") >= 3
    assert "step 60:" in capsys.readouterr().out
