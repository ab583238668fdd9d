"""Real GPS tracks fitted onto the replay's trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ordercast.replay.grubhub import Instance, Point
from ordercast.replay.plan import PlanOptions, build_plan
from ordercast.replay.tracks import (
    ANCHOR,
    MIN_DISPLACEMENT_M,
    Track,
    fit,
    load_tracks,
    position_at,
    to_lat_lng,
)
from tests.replay.data import DATA

TRACKS = DATA.parent / "gotrack-aracaju"


@pytest.fixture(scope="module")
def tracks() -> list[Track]:
    if not TRACKS.is_dir():
        pytest.skip("Go!Track data not found at ../shared/data/gotrack-aracaju")
    return load_tracks(TRACKS)


def path_length(points: list[Point]) -> float:
    return sum(a.distance_m(b) for a, b in zip(points, points[1:], strict=False))


def test_clean_city_trips_are_loaded_in_metres(tracks: list[Track]) -> None:
    assert len(tracks) >= 40
    assert all(t.displacement_m >= MIN_DISPLACEMENT_M for t in tracks)
    first = tracks[0]
    assert first.fixes[0] == (0.0, 0.0, 0.0)
    assert [t for t, _, _ in first.fixes] == sorted(t for t, _, _ in first.fixes)


def test_a_fitted_track_runs_from_start_to_end_over_the_trip(
    tracks: list[Track],
) -> None:
    start, end = Point(1000.0, 2000.0), Point(4000.0, -1000.0)

    fitted = fit(tracks[0], start, end, 30.0, 45.0)

    assert fitted[0][0] == 30.0
    assert fitted[-1][0] == pytest.approx(45.0)
    assert fitted[0][1].distance_m(start) < 1e-6
    assert fitted[-1][1].distance_m(end) < 1e-6
    minutes = [minute for minute, _ in fitted]
    assert minutes == sorted(minutes)


def test_fitting_keeps_the_shape_of_the_real_track(tracks: list[Track]) -> None:
    track = tracks[0]
    real = [Point(x, y) for _, x, y in track.fixes]
    start, end = Point(0.0, 0.0), Point(0.0, 2000.0)

    fitted = [p for _, p in fit(track, start, end, 0.0, 10.0)]

    # winding relative to the straight line is the same before and after
    real_ratio = path_length(real) / track.displacement_m
    assert path_length(fitted) / 2000.0 == pytest.approx(real_ratio)


def test_grubhub_metres_are_drawn_around_the_anchor() -> None:
    origin = Point(500_000.0, 4_000_000.0)

    assert to_lat_lng(origin, origin) == ANCHOR
    lat, lng = to_lat_lng(Point(origin.x, origin.y + 1000.0), origin)
    assert lat - ANCHOR[0] == pytest.approx(math.degrees(1000 / 6_371_000), abs=1e-6)
    assert lng == ANCHOR[1]


def test_positions_are_interpolated_along_a_path() -> None:
    path = ((0.0, 0.0, 0.0), (10.0, 1.0, 2.0))

    assert position_at(path, -1.0) == (0.0, 0.0)
    assert position_at(path, 5.0) == (0.5, 1.0)
    assert position_at(path, 11.0) == (1.0, 2.0)


def test_a_plan_with_tracks_moves_each_courier_to_the_restaurant_and_the_door(
    instance: Instance, tracks: list[Track]
) -> None:
    options = PlanOptions(prefix="g", limit=40, start_minute=600, tracks=tuple(tracks))

    plan = build_plan(instance, options)

    delivered = [o for o, s in plan.intended.items() if s.value == "DELIVERED"]
    assert delivered
    for order_id in delivered:
        steps = plan.steps_of(order_id)
        details = steps[0].fields["details"]
        legs = [leg for leg in plan.legs if leg.order_id == order_id]
        to_door = legs[-1]
        assert to_door.path[0][1:] == pytest.approx(
            (details["pickup"]["lat"], details["pickup"]["lng"]), abs=1e-5
        )
        assert to_door.path[-1][1:] == pytest.approx(
            (details["dropoff"]["lat"], details["dropoff"]["lng"]), abs=1e-5
        )
        picked_up = next(s for s in steps if s.command.value == "pick_up")
        assert to_door.start_minute == picked_up.at_minute
        assert to_door.subject == next(
            s.fields["courierId"] for s in steps if s.command.value == "assign_courier"
        )


def test_a_plan_without_tracks_plans_no_positions(instance: Instance) -> None:
    plan = build_plan(instance, PlanOptions(prefix="g", limit=10, start_minute=600))

    assert plan.legs == ()


def test_the_same_seed_and_tracks_give_the_same_legs(
    instance: Instance, tracks: list[Track]
) -> None:
    options = PlanOptions(prefix="g", limit=20, start_minute=600, tracks=tuple(tracks))

    assert build_plan(instance, options).legs == build_plan(instance, options).legs


def test_missing_tracks_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_tracks(tmp_path)
