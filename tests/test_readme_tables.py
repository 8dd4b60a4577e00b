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
