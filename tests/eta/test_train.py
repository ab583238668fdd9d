"""Retraining the ETA model on the real data reproduces what ships."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ordercast.cli import app
from ordercast.eta import model
from ordercast.eta.train import TrainingDataError, train

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    if not (DATA / "zomato-food-delivery").is_dir():
        pytest.skip("the real data is not beside the repository")
    return train(DATA)


def test_retraining_gives_the_shipped_coefficients(trained: dict[str, object]) -> None:
    shipped = json.loads(Path(model.__file__).with_name(model.COEFFICIENTS).read_text())

    assert trained == shipped


def test_the_ride_model_beats_the_median_on_held_out_rows(
    trained: dict[str, object],
) -> None:
    ride = trained["ride"]
    assert isinstance(ride, dict)

    assert ride["rows"]["test"] > 1000
    assert ride["maeMinutes"] < ride["baselineMaeMinutes"] - 1.0


def test_the_preparation_model_is_measured_against_the_mean(
    trained: dict[str, object],
) -> None:
    preparation = trained["preparation"]
    assert isinstance(preparation, dict)

    assert preparation["rows"]["test"] > 3000
    assert preparation["maeMinutes"] <= preparation["baselineMaeMinutes"]
    assert preparation["intercept"] == 15.0  # the median, README of the data


def test_train_eta_writes_the_model_and_prints_both_errors(
    trained: dict[str, object], tmp_path: Path
) -> None:
    output = tmp_path / "model.json"

    result = CliRunner().invoke(
        app, ["train-eta", "--data", str(DATA), "--output", str(output)]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text()) == trained
    assert "ride: MAE" in result.output
    assert "preparation: MAE" in result.output
    assert "baseline" in result.output


def test_training_without_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="grubhub-mdrp"):
        train(tmp_path)

    result = CliRunner().invoke(app, ["train-eta", "--data", str(tmp_path)])

    assert result.exit_code == 2
