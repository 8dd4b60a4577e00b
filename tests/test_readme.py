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
