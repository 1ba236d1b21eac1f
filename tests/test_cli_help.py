"""Help a person can follow literally (issue 13 §3): every command's --help ends with 2–4
examples that parse; a global option typed after the command says where it goes; an
unknown command suggests the nearest one."""
from __future__ import annotations

import shlex
import warnings

import pytest
from click.testing import CliRunner

from etl.cli import COMMANDS, cli, nearest_command


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def examples_of(text: str) -> list[str]:
    head, found, tail = text.rpartition("Examples:\n")
    assert found, f"no Examples block at the end of:\n{text}"
    return [line.strip() for line in tail.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_ends_with_examples_that_parse(command, tmp_path, monkeypatch):
    examples = examples_of(help_text(*([command] if command else [])))
    assert 2 <= len(examples) <= 4, examples
    monkeypatch.chdir(tmp_path)           # the files the examples name exist here
    for name in ("exports/today/clients.csv", "edited.xlsx", "clients.csv", "old-system.csv",
                 "old-system-export.csv", "old-system-export.xlsx", "old-system.map.toml",
                 "old-system-export.map.toml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("ClientId\n", encoding="utf-8")
    for example in examples:
        words = shlex.split(example)
        assert words[0] == "intakeq-etl", example
        with cli.make_context("intakeq-etl", words[1:]) as ctx:      # global options
            with warnings.catch_warnings():      # click 9: ctx.args holds them all
                warnings.simplefilter("ignore", DeprecationWarning)
                rest = [*getattr(ctx, "protected_args", []), *ctx.args]
            name, cmd, args = cli.resolve_command(ctx, rest)
            assert command in (None, name), example
            cmd.make_context(name, args, parent=ctx).close()         # raises on a bad option


@pytest.mark.parametrize("typed, expected", [
    (["export", "--sandbox", "--out", "x"], "intakeq-etl --sandbox export"),
    (["import", "file.csv", "--debug"], "intakeq-etl --debug import"),
    (["quota", "--state-dir", "/tmp/x"], "intakeq-etl --state-dir STATE_DIR quota"),
])
def test_a_global_option_after_the_command_says_where_it_goes(typed, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.csv").write_text("ClientId\n", encoding="utf-8")
    result = CliRunner().invoke(cli, typed)
    assert result.exit_code == 2
    assert f"global options go before the command: {expected}" in result.output
    assert "Did you mean" not in result.output       # not a near-miss of the command's own options


def test_an_unknown_option_of_the_command_keeps_clicks_suggestion():
    result = CliRunner().invoke(cli, ["export", "--out", "x", "--incremntal"])
    assert result.exit_code == 2
    assert "--incremental" in result.output and "global options" not in result.output


@pytest.mark.parametrize("typed, nearest", [("exprot", "export"), ("imprt", "import"), ("val", "validate"),
                                            ("quote", "quota"), ("sandbx", "sandbox")])
def test_an_unknown_command_suggests_the_nearest(typed, nearest):
    result = CliRunner().invoke(cli, [typed])
    assert result.exit_code == 2
    assert f"No such command '{typed}'. Did you mean '{nearest}'?" in result.output
    assert nearest_command(typed) == nearest


def test_a_command_nothing_like_any_lists_them():
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "The commands: export, import, map, undo, history, validate, quota, sandbox." in result.output
