"""experiments._config: config files by name, dotted overrides of the field's type, unknown keys named."""

import pytest

from experiments import _config

CONFIGS = ("demo", "rosenbrock", "seismic", "superres", "vessels")


@pytest.mark.parametrize("experiment", CONFIGS)
def test_every_config_has_default_and_smoke(experiment):
    path = f"experiments/configs/{experiment}.py"
    default, smoke = _config.load_config(path), _config.load_config(path + ":smoke")
    assert default.to_dict() == _config.load_config(path + ":default").to_dict()
    assert sorted(default.keys()) == sorted(smoke.keys())  # the same keys, smaller values
    assert smoke.to_dict() != default.to_dict()
    if experiment != "demo":  # the demo follows no paper
        assert sorted(_config.load_config(path + ":paper").keys()) == sorted(default.keys())


def test_paper_superres_is_winkler_et_al():
    paper = _config.load_config("experiments/configs/superres.py:paper")
    assert (paper.model.levels, paper.model.blocks, paper.model.hidden) == (3, 8, 512)
    assert (paper.model.context_features, paper.model.encoder_blocks) == (128, 16)
    assert (paper.data.source, paper.train.batch, paper.train.lr) == ("tfds", 64, 2e-4)


def test_overrides_parse_as_the_fields_type():
    command = _config.parse_command_line(
        ["--config", "experiments/configs/superres.py:paper", "--config.train.steps=1000", "--config.train.lr", "1",
         "--config.model.context_skip=false", "--out", "somewhere"], "superres", "")
    assert command.config.train.steps == 1000 and command.out == "somewhere" and command.distributed == "auto"
    assert isinstance(command.config.train.lr, float) and command.config.train.lr == 1.0
    assert command.config.model.context_skip is False
    command = _config.parse_command_line(["--config.sweep.scratch=5,10"], "rosenbrock", "")
    assert command.config.sweep.scratch == (5, 10)


def test_unknown_key_and_bad_value_are_named():
    with pytest.raises(ValueError, match="train.stpes"):
        _config.parse_command_line(["--config.train.stpes=3"], "superres", "")
    with pytest.raises(ValueError, match="trian"):
        _config.parse_command_line(["--config.trian.steps=3"], "superres", "")
    with pytest.raises(ValueError, match="train.steps.*int"):
        _config.parse_command_line(["--config.train.steps=many"], "superres", "")
    with pytest.raises(ValueError, match="`--config`.*nowhere.py"):
        _config.parse_command_line(["--config", "nowhere.py:paper"], "superres", "")
    with pytest.raises(ValueError, match="`name`"):
        _config.load_config("experiments/configs/superres.py:huge")
