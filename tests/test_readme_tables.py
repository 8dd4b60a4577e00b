"""The README's result tables are the committed result files, rendered by experiments.readme_tables."""

import pathlib

import pytest

from experiments import readme_tables

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tables_are_up_to_date():
    assert readme_tables.main(["--check"]) == 0, "run `python -m experiments.readme_tables`"


def test_check_catches_an_edited_figure(tmp_path, capsys):
    text = README.read_text(encoding="utf-8")
    assert "| jcnf | 7,868 | 7,500 |" in text
    edited = tmp_path / "README.md"
    edited.write_text(text.replace("| jcnf | 7,868 | 7,500 |", "| jcnf | 9,999 | 7,500 |"), encoding="utf-8")
    assert readme_tables.main(["--check", "--readme", str(edited)]) == 1
    assert "out of date" in capsys.readouterr().err
    # Without --check the table is rewritten from the JSON, which restores the measured figure.
    assert readme_tables.main(["--readme", str(edited)]) == 0
    assert edited.read_text(encoding="utf-8") == text


def test_every_table_has_its_markers():
    text = README.read_text(encoding="utf-8")
    for name in readme_tables.TABLES:
        assert text.count(f"<!-- table:{name} -->") == 1 and text.count(f"<!-- /table:{name} -->") == 1, name
    with pytest.raises(ValueError, match="table:superres"):
        readme_tables.render(text.replace("<!-- table:superres -->", ""))


def test_npe_table_takes_each_task_from_the_first_record_that_has_it():
    def record(tasks, c2st, device):
        rows = [{"task": task, "budget": 1000, "estimator": name, "c2st_mean": c2st, "train_s": 12.0}
                for task in tasks for name in ("jcnf", "flowjax")]
        return {"tasks": tasks, "results": rows + [{"task": tasks[0], "budget": 1000, "estimator": "sbi",
                                                    "skipped": "not importable"}],
                "complete": True, "observations": 3, "settings": {"posterior_samples": 10_000},
                "jcnf_estimator": "stand-in",
                "environment": {"flowjax": "19.1.2", "device": device, "cpu_count": 2, "load_average_1min": 9.0}}

    stopped = record(["two_moons", "slcp"], 0.7, "cpu A")
    stopped["results"] = [row for row in stopped["results"] if row["task"] == "two_moons"]
    stopped["complete"] = False
    table = readme_tables.npe_table(stopped, record(["two_moons", "slcp"], 0.9, "cpu B"))
    assert "| two_moons | 1,000 | 0.700 | 0.700 | 12 | 12 |" in table
    assert "| slcp | 1,000 | 0.900 | 0.900 | 12 | 12 |" in table and "0.900 | 0.900 | 12 | 12 |\n| two" not in table
    assert "two_moons: C2ST mean over 3" in table and "cpu A" in table and "slcp: C2ST" in table and "cpu B" in table
    assert "stopped after these tasks" in table
    assert "sbi" not in table.split("\n\n")[0]
