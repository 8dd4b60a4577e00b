"""progress_bar: a tqdm bar on a terminal, one plain line per log interval elsewhere."""

import io
import sys

import pytest
from tqdm.std import tqdm as std_tqdm

from jcnf._progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_without_terminal_prints_one_line_per_interval(capsys):
    bar = progress_bar(10, log_every=4, desc="fit")
    assert isinstance(bar, LineProgress)
    for step in range(1, 11):
        if step % 4 == 0:
            bar.set_postfix(loss=f"{1.0 / step:.3f}")
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    # Steps 4 and 8, and the last step 10 (close adds nothing: its line is already out).
    assert [line.split(" (")[0] for line in lines] == ["fit: step 4/10", "fit: step 8/10", "fit: step 10/10"]
    assert lines[0].endswith("loss=0.250") and lines[1].endswith("loss=0.125")


def test_resumed_count_and_final_line_on_close(capsys):
    bar = progress_bar(100, initial=40, log_every=50)
    bar.update(5)
    bar.close()
    assert capsys.readouterr().err.splitlines()[0].startswith("step 45/100 (45%")


def test_disabled_prints_nothing(capsys):
    bar = progress_bar(10, log_every=1, disable=True)
    bar.set_postfix(loss=1.0)
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ""


def test_terminal_gets_a_tqdm_bar(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = progress_bar(10, log_every=5)
    try:
        assert isinstance(bar, std_tqdm)
        bar.update(3)
        assert bar.n == 3
    finally:
        bar.close()


@pytest.mark.parametrize("kwargs, name", [({"total": -1}, "total"), ({"total": 10, "log_every": 0}, "log_every"),
                                          ({"total": 10, "initial": 11}, "initial")])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        progress_bar(**kwargs)
