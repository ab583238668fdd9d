"""Where the Grubhub instances are, and small instances written on the spot."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grubhub-mdrp"
"""The Grubhub instances: `../shared/data/grubhub-mdrp` from the repository root."""


def instance_dir(name: str = "0o100t100s1p100") -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"Grubhub data not found at ../shared/data/grubhub-mdrp/{name}")
    return path


def write_instance(
    folder: Path,
    orders: list[str],
    couriers: list[str],
    restaurants: list[str],
    parameters: str = "320\t4\t4\t40\t90\t10\t15",
) -> Path:
    """A small instance folder in the published format (tab-separated, headers)."""
    folder.mkdir(parents=True)
    files = {
        "orders.txt": ["order\tx\ty\tplacement_time\trestaurant\tready_time", *orders],
        "couriers.txt": ["courier\tx\ty\ton_time\toff_time", *couriers],
        "restaurants.txt": ["restaurant\tx\ty", *restaurants],
        "instance_parameters.txt": [
            "meters_per_minute\tpickup service minutes\tdropoff service minutes\t"
            "target click-to-door\tmaximum click-to-door\tpay per order\t"
            "guaranteed pay per hour",
            parameters,
        ],
    }
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder
