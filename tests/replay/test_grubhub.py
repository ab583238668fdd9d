"""Reading Grubhub MDRP instance folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordercast.replay.grubhub import Instance, InstanceError, Point, load_instance
from tests.replay.data import instance_dir, write_instance


def test_real_instance_has_the_published_counts(instance: Instance) -> None:
    # given the published summary of instance 0
    text = (instance_dir() / "instance_characteristics.txt").read_text()

    # then the loader read every order, restaurant and courier shift
    assert f"number of orders: {len(instance.orders)}" in text
    assert f"number of restaurants: {len(instance.restaurants)}" in text
    assert f"number of couriers: {len(instance.couriers)}" in text
    assert instance.name == "0o100t100s1p100"
    assert instance.number == 0


def test_real_instance_parameters_give_the_travel_model(instance: Instance) -> None:
    params = instance.parameters
    assert params.meters_per_minute == 320
    assert params.pickup_service_minutes == 4
    assert params.dropoff_service_minutes == 4
    assert params.maximum_click_to_door_minutes == 90


def test_orders_come_in_placement_order(instance: Instance) -> None:
    placements = [order.placement_minute for order in instance.orders]
    assert placements == sorted(placements)


def test_orders_keep_their_published_fields(instance: Instance) -> None:
    # the first line of orders.txt: o1 9131 7497 743 r1 753
    first_line = next(order for order in instance.orders if order.order_id == "o1")
    assert first_line.at == Point(9131, 7497)
    assert (first_line.placement_minute, first_line.ready_minute) == (743, 753)
    assert instance.restaurant_of(first_line).at == Point(8708, 5633)


def test_courier_is_on_duty_from_on_time_until_just_before_off_time(
    instance: Instance,
) -> None:
    courier = instance.couriers[0]
    assert courier.is_on_duty(courier.on_minute)
    assert courier.is_on_duty(courier.off_minute - 0.01)
    assert not courier.is_on_duty(courier.off_minute)
    assert not courier.is_on_duty(courier.on_minute - 0.01)


def test_missing_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InstanceError, match="no such instance folder") as caught:
        load_instance(tmp_path / "9o100t100s1p100")
    assert caught.value.path == tmp_path / "9o100t100s1p100"


def test_missing_file_is_named(tmp_path: Path) -> None:
    folder = write_instance(tmp_path / "3small", [], [], ["r1\t0\t0"])
    (folder / "couriers.txt").unlink()
    with pytest.raises(InstanceError, match=r"missing couriers\.txt"):
        load_instance(folder)


def test_order_of_unknown_restaurant_is_refused(tmp_path: Path) -> None:
    folder = write_instance(
        tmp_path / "small", ["o1\t0\t0\t10\tr9\t20"], [], ["r1\t0\t0"]
    )
    with pytest.raises(InstanceError, match="unknown restaurants"):
        load_instance(folder)


def test_malformed_row_is_refused(tmp_path: Path) -> None:
    folder = write_instance(tmp_path / "small", ["o1\tx\t0\t10\tr1\t20"], [], [])
    with pytest.raises(InstanceError, match="malformed"):
        load_instance(folder)


def test_folder_without_leading_digits_is_instance_zero(tmp_path: Path) -> None:
    folder = write_instance(
        tmp_path / "small", ["o1\t0\t0\t10\tr1\t20"], [], ["r1\t0\t0"]
    )
    assert load_instance(folder).number == 0
    renamed = folder.rename(tmp_path / "12busy")
    assert load_instance(renamed).number == 12
