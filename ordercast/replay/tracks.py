"""Real GPS tracks (Go!Track, Aracaju) bent onto the replay's trips.

Grubhub instances have places but no movement; Go!Track has movement on real
streets but other places. A trip of the replay (courier to restaurant,
restaurant to customer) takes the shape and the rhythm of one real track:
the track is rotated, scaled and moved so that its first fix lands on the
trip's start and its last on the trip's end, and its timestamps are
stretched over the trip's minutes. Stops stay stops, speed-ups stay
speed-ups.

Where Grubhub's plane goes on the map: its metres (UTM with the zone dropped
and every place perturbed, so no real position can be recovered) are laid on
a local tangent plane whose origin, the mean of the instance's restaurants,
sits at `ANCHOR`. Distances and bearings are kept; the places are plausible,
not real.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ordercast.replay.grubhub import Point

EARTH_RADIUS_M = 6_371_000.0

ANCHOR = (-10.93, -37.06)
"""(lat, lng) where an instance's origin is drawn: central Aracaju, where the
GPS tracks were recorded."""

CLEAN_TRACKS = (
    1, 2, 11, 13, 16, 20, 22, 23, 28, 33, 35, 36, 37, 38, 41, 42, 43, 47, 48, 58,
    131, 132, 133, 136, 138, 140, 142, 150, 151, 153, 208, 210, 37951, 37960,
    37962, 37964, 37969, 37996, 38000, 38012, 38013, 38015, 38016, 38019, 38020,
    38022, 38044, 38045, 38072, 38073, 38074, 38075, 38076, 38077, 38079, 38080,
    38081, 38082,
)  # fmt: skip
"""The data README's 58 city trips of 5-60 minutes with no gap over 60 s."""

MIN_DISPLACEMENT_M = 500.0
"""A track that ends closer than this to its start (a loop) cannot be fitted."""

POINTS_FILE = "go_track_trackspoints.csv"


@dataclass(frozen=True)
class Track:
    """One real trip: (seconds since its first fix, x metres, y metres)."""

    track_id: int
    fixes: tuple[tuple[float, float, float], ...]

    @property
    def displacement_m(self) -> float:
        _, x0, y0 = self.fixes[0]
        _, x1, y1 = self.fixes[-1]
        return math.hypot(x1 - x0, y1 - y0)


def load_tracks(folder: Path, ids: Sequence[int] = CLEAN_TRACKS) -> list[Track]:
    """The tracks `ids` of a Go!Track folder that can be fitted, in id order.

    Raises:
        FileNotFoundError: the folder has no `go_track_trackspoints.csv`.
    """
    wanted = set(ids)
    rows: dict[int, list[tuple[datetime, float, float]]] = {}
    with (folder / POINTS_FILE).open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            track_id = int(row["track_id"])
            if track_id in wanted:
                at = datetime.fromisoformat(row["time"].strip())
                point = (at, float(row["latitude"]), float(row["longitude"]))
                rows.setdefault(track_id, []).append(point)
    tracks = [_track(track_id, rows[track_id]) for track_id in sorted(rows)]
    return [t for t in tracks if t.displacement_m >= MIN_DISPLACEMENT_M]


def _track(track_id: int, fixes: list[tuple[datetime, float, float]]) -> Track:
    fixes.sort(key=lambda fix: fix[0])
    t0, lat0, lng0 = fixes[0]
    local = tuple(
        ((at - t0).total_seconds(), *_to_metres(lat, lng, lat0, lng0))
        for at, lat, lng in fixes
    )
    return Track(track_id, local)


def _to_metres(lat: float, lng: float, lat0: float, lng0: float) -> tuple[float, float]:
    x = math.radians(lng - lng0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    return x, y


def to_lat_lng(point: Point, origin: Point) -> tuple[float, float]:
    """Where a Grubhub point is drawn: `origin` at ANCHOR, metres kept."""
    lat0, lng0 = ANCHOR
    lat = lat0 + math.degrees((point.y - origin.y) / EARTH_RADIUS_M)
    scale = EARTH_RADIUS_M * math.cos(math.radians(lat0))
    lng = lng0 + math.degrees((point.x - origin.x) / scale)
    return round(lat, 6), round(lng, 6)


def fit(
    track: Track, start: Point, end: Point, start_minute: float, end_minute: float
) -> list[tuple[float, Point]]:
    """The track laid from `start` to `end`, timed over the trip's minutes.

    A similarity transform (rotation, uniform scale, translation) maps the
    track's first fix to `start` and its last to `end`; each fix keeps its
    share of the track's duration.
    """
    t_first, x0, y0 = track.fixes[0]
    t_last, x1, y1 = track.fixes[-1]
    # complex numbers: z -> a * (z - z0) + start, with a = (end - start) / (z1 - z0)
    a = complex(end.x - start.x, end.y - start.y) / complex(x1 - x0, y1 - y0)
    span_s = (t_last - t_first) or 1.0
    fitted = []
    for t, x, y in track.fixes:
        z = a * complex(x - x0, y - y0)
        minute = start_minute + (t - t_first) / span_s * (end_minute - start_minute)
        fitted.append((minute, Point(start.x + z.real, start.y + z.imag)))
    return fitted


def position_at(
    path: Sequence[tuple[float, float, float]], minute: float
) -> tuple[float, float]:
    """(lat, lng) along a timed path at `minute`, interpolated between fixes."""
    if minute <= path[0][0]:
        return path[0][1], path[0][2]
    for (m0, lat0, lng0), (m1, lat1, lng1) in zip(path, path[1:], strict=False):
        if m0 <= minute <= m1:
            share = 0.0 if m1 == m0 else (minute - m0) / (m1 - m0)
            return lat0 + (lat1 - lat0) * share, lng0 + (lng1 - lng0) * share
    return path[-1][1], path[-1][2]
