"""One way for the library to talk to its caller: a hooks object, silent by default, never print."""
from __future__ import annotations

import pytest

from etl.export import ExportHooks
from etl.hooks import Hooks
from etl.importer import Hooks as ImportHooks


@pytest.mark.parametrize("kind", [Hooks, ExportHooks, ImportHooks])
def test_export_and_import_hooks_are_one_silent_interface(kind, capsys):
    hooks = kind()
    assert isinstance(hooks, Hooks)
    hooks.say("a message")
    hooks.note("a note")
    assert hooks.should_stop() is False
    with hooks.progress(3, desc="clients", unit="page") as bar:
        bar.update(1, clients=100, remaining=2)
    assert capsys.readouterr() == ("", "")


def test_prepare_prints_nothing_unless_asked(sandbox, run_cli, settings, tmp_path, capsys):
    from test_import import export_csv

    from etl.api import IntakeQClient
    from etl.importer import ImportOptions, Paths, prepare

    path = export_csv(run_cli, tmp_path / "export")
    capsys.readouterr()
    client = IntakeQClient(settings)
    try:
        prepared = prepare(client, settings, path, ImportOptions(), Paths.beside(path), checkpoint=None)
        assert capsys.readouterr() == ("", "")
        heard = []
        prepare(client, settings, path, ImportOptions(), Paths.beside(path), checkpoint=None, echo=heard.append)
    finally:
        client.close()
    assert prepared.counts() and heard        # it did its work, and speaks when given an echo
