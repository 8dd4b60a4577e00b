"""The super-resolution experiment runs end to end in its smoke configuration."""

import json
import math

from experiments import superres


def test_smoke_run_writes_results_and_figure(tmp_path):
    results = superres.main(["--config", "experiments/configs/superres.py:smoke", "--out", str(tmp_path)])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["cnf"]["test_bits_per_dim"] == results["cnf"]["test_bits_per_dim"]
    assert (tmp_path / "samples.png").stat().st_size > 1000
    # The baseline's head width is chosen to match the flow's parameter count:
    # within 15% at this tiny size (one width step changes it by a few percent).
    assert abs(results["baseline"]["params"] / results["cnf"]["params"] - 1) < 0.15
    for name in ("cnf", "baseline"):
        # Even barely trained, both are proper models of 8-bit data: below the
        # 8 bits/dim of a uniform model, plus slack for 4 steps of training.
        assert 0 < results[name]["test_bits_per_dim"] < 9.0
    assert set(results["cnf"]["samples"]) == {"0", "0.5", "0.8", "1"}
    for scores in [results["bicubic"], results["baseline"]["mode"], *results["cnf"]["samples"].values()]:
        assert math.isfinite(scores["psnr"]) and -1.0 <= scores["ssim"] <= 1.0
    # Bicubic upsampling of a x2 area-downsampled photograph is a strong
    # reference: well above 20 dB on natural-image patches.
    assert results["bicubic"]["psnr"] > 20.0
