"""`ordercast train-eta`: fit the ETA models on the real data, reproducibly.

Reads `../shared/data/zomato-food-delivery/` (ride durations) and
`../shared/data/grubhub-mdrp/` (preparation times), holds out a fifth of each
with a fixed seed, fits on the rest with scikit-learn, and reports the mean
absolute error in minutes of each model and of a naive baseline on the
held-out rows. The fitted coefficients go to `coefficients.json`, which
`ordercast.eta.model` reads at run time without scikit-learn.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordercast.eta.model import CATEGORIES, NUMBERS, Point

SEED = 7
TEST_SHARE = 0.2

ZOMATO_FILE = "zomato-food-delivery/zomato_delivery_test_split_9117.csv"

_ZOMATO_COLUMNS = {
    "traffic": "Road_traffic_density",
    "weather": "Weather_conditions",
    "vehicle": "Type_of_vehicle",
    "city": "City",
    "orderType": "Type_of_order",
}


class TrainingDataError(ValueError):
    """The data folder lacks a file the training reads."""


@dataclass(frozen=True)
class Rows:
    """A design matrix and its target, as plain lists."""

    names: list[str]
    features: list[list[float]]
    minutes: list[float]


# reading the data


def ride_rows(data: Path) -> Rows:
    """Zomato rows: pickup-to-door minutes and the features the model reads.

    The target is `Time_taken (min)` less the order-to-pickup gap. Rows with
    restaurant coordinates at 0,0 or without both clock times are dropped;
    negative latitudes are read as their absolute value (see the data README).
    """
    path = data / ZOMATO_FILE
    if not path.is_file():
        raise TrainingDataError(f"missing {path}")
    names = ["distance_km", *_category_names(), "festival", *NUMBERS]
    features: list[list[float]] = []
    minutes: list[float] = []
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            parsed = _ride_row(row)
            if parsed is not None:
                features.append(parsed[0])
                minutes.append(parsed[1])
    return Rows(names, features, minutes)


def _category_names() -> list[str]:
    pairs = [(name, value) for name, values in CATEGORIES.items() for value in values]
    return [f"{name}={value}" for name, value in pairs]


def _ride_row(row: dict[str, str]) -> tuple[list[float], float] | None:
    pickup = Point(
        abs(float(row["Restaurant_latitude"])), abs(float(row["Restaurant_longitude"]))
    )
    dropoff = Point(
        float(row["Delivery_location_latitude"]),
        float(row["Delivery_location_longitude"]),
    )
    ordered, picked = _clock(row["Time_Orderd"]), _clock(row["Time_Order_picked"])
    if pickup.lat == 0 or ordered is None or picked is None:
        return None
    gap_min = (picked - ordered) % (24 * 60)
    features = [pickup.distance_km(dropoff)]
    for name, values in CATEGORIES.items():
        given = row[_ZOMATO_COLUMNS[name]]
        features.extend(1.0 if given == value else 0.0 for value in values)
    features.append(1.0 if row["Festival"] == "Yes" else 0.0)
    features.append(float(row["multiple_deliveries"] or 1.0))
    features.append(float(row["Vehicle_condition"]))
    return features, float(row["Time_taken (min)"]) - gap_min


def _clock(text: str) -> int | None:
    """Minute of the day of `HH:MM[:SS]`, or of a spreadsheet day fraction."""
    if not text:
        return None
    if ":" in text:
        hours, minutes = text.split(":")[:2]
        return int(hours) * 60 + int(minutes)
    return round(float(text) * 24 * 60) % (24 * 60)


def preparation_minutes(data: Path) -> list[float]:
    """Grubhub ready minus placement minutes, over every seed instance."""
    folders = sorted((data / "grubhub-mdrp").glob("*o100t100s1p100"))
    if not folders:
        raise TrainingDataError(f"no Grubhub instance under {data / 'grubhub-mdrp'}")
    minutes: list[float] = []
    for folder in folders:
        with (folder / "orders.txt").open(newline="", encoding="utf-8") as file:
            rows = [row for row in csv.reader(file, delimiter="\t") if row][1:]
        minutes.extend(float(row[5]) - float(row[3]) for row in rows)
    return minutes


# fitting


def train(data: Path) -> dict[str, Any]:
    """Fit both models and measure them; the JSON body `coefficients.json` holds.

    Raises:
        TrainingDataError: a data file is missing.
    """
    return {
        "version": 1,
        "seed": SEED,
        "testShare": TEST_SHARE,
        "preparation": _fit_preparation(preparation_minutes(data)),
        "ride": _fit_ride(ride_rows(data)),
    }


def _fit_ride(rows: Rows) -> dict[str, Any]:
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split

    x = np.asarray(rows.features)
    y = np.asarray(rows.minutes)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SHARE, random_state=SEED
    )
    model = Ridge(alpha=1.0).fit(x_train, y_train)
    baseline = float(np.median(y_train))
    predicted = np.maximum(model.predict(x_test), 1.0)
    return {
        "source": ZOMATO_FILE,
        "target": "Time_taken (min) less the order-to-pickup gap",
        "estimator": "sklearn.linear_model.Ridge(alpha=1.0)",
        "intercept": _round(model.intercept_),
        "features": [
            {"name": name, "coef": _round(coef), "mean": _round(mean)}
            for name, coef, mean in zip(
                rows.names, model.coef_, x_train.mean(axis=0), strict=True
            )
        ],
        "rows": {"train": len(y_train), "test": len(y_test)},
        "maeMinutes": _round(np.mean(np.abs(y_test - predicted))),
        "baseline": "median of the training rows",
        "baselineMaeMinutes": _round(np.mean(np.abs(y_test - baseline))),
    }


def _fit_preparation(minutes: list[float]) -> dict[str, Any]:
    """The median preparation time, fitted as a least-absolute-error model.

    No feature known when an order is placed predicts preparation in the
    Grubhub data (restaurant load and time of day each gained under 0.5 %
    over the median), so the model is an intercept; the baseline is the mean.
    """
    import numpy as np
    from sklearn.linear_model import QuantileRegressor
    from sklearn.model_selection import train_test_split

    y = np.asarray(minutes)
    y_train, y_test = train_test_split(y, test_size=TEST_SHARE, random_state=SEED)
    x_train = np.zeros((len(y_train), 1))  # an intercept-only fit
    model = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs")
    model.fit(x_train, y_train)
    predicted = float(model.intercept_)
    baseline = float(np.mean(y_train))
    return {
        "source": "grubhub-mdrp/*o100t100s1p100/orders.txt",
        "target": "ready_time - placement_time",
        "estimator": "sklearn.linear_model.QuantileRegressor(quantile=0.5)",
        "intercept": _round(predicted),
        "features": [],
        "rows": {"train": len(y_train), "test": len(y_test)},
        "maeMinutes": _round(np.mean(np.abs(y_test - predicted))),
        "baseline": "mean of the training rows",
        "baselineMaeMinutes": _round(np.mean(np.abs(y_test - baseline))),
    }


def _round(value: Any) -> float:
    """Six significant decimals: enough for minutes, stable across platforms."""
    number = float(value)
    return 0.0 if math.isclose(number, 0.0, abs_tol=1e-12) else round(number, 6)
