"""The CLI's error contract: a user's mistake is one line naming what is wrong (exit 2); anything else
is a bug and keeps its traceback."""

from __future__ import annotations

import types

import pytest

from visuomotor import cli
from visuomotor.errors import InvalidInputError, MissingKeyError, MissingPathError, UserError
from visuomotor.policies import make_config
from visuomotor.policies.expo.config import OnlineConfig
from visuomotor.train import TrainConfig


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


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainConfig(steps=0), "steps must be >= 1, got 0"),
        (lambda: TrainConfig(val_ratio=1.0), r"val_ratio must be in \[0, 1\), got 1.0"),
        (lambda: make_config("diffusion", crop_ratio=0.05), r"crop_ratio must be in \[0.1, 1\], got 0.05"),
        (lambda: make_config("diffusion", shift_pad=-1), "shift_pad must be >= 0, got -1"),
        (lambda: make_config("diffusion", horizon=0), "horizon must be >= 1, got 0"),
        (lambda: OnlineConfig(tau=0.0), r"tau must be in \(0, 1\], got 0.0"),
        (lambda: OnlineConfig(offline_ratio=-0.1), r"offline_ratio must be in \[0, 1\), got -0.1"),
    ],
)
def test_a_value_out_of_range_names_the_field_the_interval_and_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_values_on_the_bounds_are_accepted():
    TrainConfig(steps=1, val_ratio=0.0)
    make_config("diffusion", crop_ratio=1.0, shift_pad=0)
    OnlineConfig(tau=1.0, offline_ratio=0.0)
