"""The CLI's error contract: a user's mistake is one line naming what is wrong (exit 2); anything else
is a bug and keeps its traceback."""

from __future__ import annotations

import types

import pytest

from visuomotor import cli
from visuomotor.errors import InvalidInputError, MissingKeyError, MissingPathError, UserError


def test_user_errors_are_also_the_builtin_errors_callers_catch():
    assert issubclass(InvalidInputError, ValueError) and issubclass(InvalidInputError, UserError)
    assert issubclass(MissingPathError, FileNotFoundError)
    assert str(MissingKeyError("store has no 'x'")) == "store has no 'x'"  # not KeyError's quoted repr


def test_a_user_mistake_prints_one_line(tmp_path, capsys):
    assert cli.main(["dataset", "info", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing.zarr" in err and "\n" not in err


def _command(exc: Exception) -> types.SimpleNamespace:
    def run(_args):
        raise exc

    return types.SimpleNamespace(run=run)


@pytest.mark.parametrize("exc", [ValueError("internal"), KeyError("internal"), RuntimeError("internal")])
def test_an_internal_error_keeps_its_traceback(monkeypatch, tmp_path, exc):
    parser = cli.build_parser()
    args = parser.parse_args(["dataset", "info", str(tmp_path)])
    monkeypatch.setattr(cli, "build_parser", lambda: types.SimpleNamespace(parse_args=lambda _argv: args))
    args._module = _command(exc)
    with pytest.raises(type(exc), match="internal"):
        cli.main([])
