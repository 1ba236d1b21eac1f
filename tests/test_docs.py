"""The docs tell the truth: every command has help and is described; CI runs the README's commands."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUNBOOKS = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "runbooks").glob("*.md")))


def readme_setup_commands() -> list[str]:
    """The first two shell commands of the README (its opening code block)."""
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", README, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_opens_with_exactly_two_setup_commands():
    first, second = readme_setup_commands()
    assert first == "pip install . && intakeq-etl --sandbox export --out exports/"
    assert "pytest" in second and ".[test]" in second


def test_ci_runs_exactly_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in readme_setup_commands():
        assert command in ci, command


def test_top_level_help_lists_every_command_with_a_line():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s+\S", result.output, re.M), name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_and_is_documented(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert f"intakeq-etl {name}" in README or f"intakeq-etl --sandbox {name}" in README, name


@pytest.mark.parametrize("name", ["nightly-export.md", "spreadsheet-round-trip.md", "data-migration.md",
                                  "recovery.md"])
def test_the_runbooks_exist(name):
    assert (ROOT / "runbooks" / name).stat().st_size > 500


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and re.search(r"\d+\.\d+\.\d+", result.output)


@pytest.mark.parametrize("name", ["export", "import", "validate"])
def test_shared_options_are_spelt_alike_in_every_command(name):
    """--format offers the codec's FORMATS; the shared options keep one spelling and flag."""
    from etl.cli import cli
    from etl.codec.formats import FORMATS

    command = cli.get_command(None, name)
    by_flag = {opt: p for p in command.params for opt in p.opts}
    assert tuple(by_flag["--format"].type.choices) == FORMATS
    assert by_flag["--format"].name == "fmt" and by_flag["--timezone"].name == "timezone"
    assert by_flag["--json"].name == "as_json" and by_flag["--no-formula-guard"].is_flag
