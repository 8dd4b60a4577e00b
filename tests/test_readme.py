"""The README's example runs as written (docs that show a working call)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_learns(capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    # value = +-context[0] + 0.1 noise: its conditional entropy is about
    # 2 * (0.5 * log(2 pi e 0.01)) = -1.77 nats, so a trained flow's NLL is well below 0.
    assert float(namespace["nll"]) < 0.0
    assert namespace["samples"].shape == (256, 2)
    assert "sample shape (256, 2)" in capsys.readouterr().out


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
