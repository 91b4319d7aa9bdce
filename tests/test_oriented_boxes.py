"""Rotated box geometry: conventions, polygon round trips (incl. squares and degenerate boxes), conversions."""

import math

import pytest
import torch
from torchvision.ops import box_convert

from monatune.ops.rotated_boxes import (
    boxes_to_hboxes,
    boxes_to_polygons,
    flip_boxes,
    from_torchvision_cxcywhr,
    polygons_to_boxes,
    polygons_to_hboxes,
    regularize_boxes,
    to_torchvision_cxcywhr,
)


def random_boxes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b = torch.rand(n, 5, generator=g, dtype=torch.float64)
    b[:, :2] *= 200
    b[:, 2:4] = b[:, 2:4] * 60 + 1
    b[:, 4] = (b[:, 4] - 0.5) * 4 * math.pi  # several turns: conventions must fold them back
    return b


def same_point_sets(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> bool:
    """Polygons (N, 8) equal as sets of 4 points (any vertex order)."""
    pa, pb = a.reshape(-1, 4, 1, 2), b.reshape(-1, 1, 4, 2)
    d = (pa - pb).norm(dim=-1)  # (N, 4, 4)
    return bool((d.amin(2) < tol).all() and (d.amin(1) < tol).all())


@pytest.mark.parametrize("convention", ["oc", "le90"])
def test_regularize_ranges_and_same_box(convention):
    boxes = random_boxes(500)
    reg = regularize_boxes(boxes, convention)
    theta = reg[:, 4]
    if convention == "oc":
        assert (theta > 0).all() and (theta <= math.pi / 2 + 1e-12).all()
    else:
        assert (theta >= -math.pi / 2).all() and (theta < math.pi / 2).all()
        assert (reg[:, 2] >= reg[:, 3]).all()
    assert same_point_sets(boxes_to_polygons(reg), boxes_to_polygons(boxes))


@pytest.mark.parametrize("convention", ["oc", "le90"])
def test_boundary_angles_land_inside_the_interval(convention):
    # Exactly horizontal / vertical boxes and rounding noise around the interval ends.
    raw = torch.tensor(
        [[0, 0, 4, 2, 0.0], [0, 0, 4, 2, math.pi / 2], [0, 0, 4, 2, -math.pi / 2], [0, 0, 4, 2, 1e-17], [0, 0, 4, 2, math.pi / 2 - 1e-16]],
        dtype=torch.float64,
    )
    reg = regularize_boxes(raw, convention)
    if convention == "oc":
        assert torch.allclose(reg[:, 4], torch.full((5,), math.pi / 2, dtype=torch.float64))
        assert torch.allclose(reg[:, 2:4], torch.tensor([[2.0, 4.0], [4.0, 2.0], [4.0, 2.0], [2.0, 4.0], [4.0, 2.0]], dtype=torch.float64))
    else:
        assert torch.allclose(reg[:, 4].abs(), torch.tensor([0, math.pi / 2, math.pi / 2, 0, math.pi / 2], dtype=torch.float64), atol=1e-12)
        assert (reg[:, 4] < math.pi / 2).all()


@pytest.mark.parametrize("convention", ["oc", "le90"])
def test_box_polygon_box_round_trip(convention):
    boxes = regularize_boxes(random_boxes(400, seed=1), convention)
    back = polygons_to_boxes(boxes_to_polygons(boxes), convention)
    torch.testing.assert_close(back, boxes, atol=1e-9, rtol=0)


def test_square_boxes_round_trip_as_polygons():
    # A square's w and h are interchangeable: its angle is only defined modulo pi/2.
    boxes = torch.tensor([[10, 20, 8, 8, 0.3], [0, 0, 5, 5, -1.2], [3, 3, 2, 2, 0.0]], dtype=torch.float64)
    for convention in ("oc", "le90"):
        back = polygons_to_boxes(boxes_to_polygons(boxes), convention)
        assert same_point_sets(boxes_to_polygons(back), boxes_to_polygons(boxes))
        torch.testing.assert_close(back[:, :4], boxes[:, :4])


def test_degenerate_boxes_round_trip():
    boxes = torch.tensor([[10, 10, 6, 0, 0.4], [5, 5, 0, 3, -0.2], [7, 8, 0, 0, 0.0]], dtype=torch.float64)
    for convention in ("oc", "le90"):
        back = polygons_to_boxes(boxes_to_polygons(boxes), convention)
        assert torch.isfinite(back).all()
        assert same_point_sets(boxes_to_polygons(back), boxes_to_polygons(boxes))
        torch.testing.assert_close(back[:, 2:4].sort(dim=1).values, boxes[:, 2:4].sort(dim=1).values)


def test_irregular_quadrilateral_gets_enclosing_min_area_rectangle():
    quad = torch.tensor([[0.0, 0.0, 10.0, 1.0, 11.0, 6.0, -1.0, 5.0]], dtype=torch.float64)
    box = polygons_to_boxes(quad, "le90")
    corners = boxes_to_polygons(box).reshape(4, 2)
    # All quad points inside the rectangle (checked in the rectangle's frame).
    cos, sin = math.cos(box[0, 4]), math.sin(box[0, 4])
    d = quad.reshape(4, 2) - box[0, :2]
    lx, ly = d[:, 0] * cos + d[:, 1] * sin, -d[:, 0] * sin + d[:, 1] * cos
    assert (lx.abs() <= box[0, 2] / 2 + 1e-9).all() and (ly.abs() <= box[0, 3] / 2 + 1e-9).all()
    hbox = polygons_to_hboxes(quad)[0]
    assert box[0, 2] * box[0, 3] <= (hbox[2] - hbox[0]) * (hbox[3] - hbox[1]) + 1e-9
    assert corners.shape == (4, 2)


def test_circumscribed_horizontal_boxes_match_polygon_extent():
    boxes = random_boxes(100, seed=2)
    torch.testing.assert_close(boxes_to_hboxes(boxes), polygons_to_hboxes(boxes_to_polygons(boxes)))


def test_torchvision_rotated_format_is_counter_clockwise_degrees():
    boxes = regularize_boxes(random_boxes(50, seed=3), "le90")
    tv = to_torchvision_cxcywhr(boxes)
    tv_polygons = box_convert(tv, "cxcywhr", "xyxyxyxy")
    assert same_point_sets(tv_polygons, boxes_to_polygons(boxes), tol=1e-6)
    torch.testing.assert_close(from_torchvision_cxcywhr(tv, "le90"), boxes)


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_boxes_matches_flipped_polygons(direction):
    boxes = regularize_boxes(random_boxes(60, seed=4), "le90")
    height, width = 300, 250
    poly = boxes_to_polygons(boxes).clone()
    if direction in ("horizontal", "diagonal"):
        poly[:, 0::2] = width - poly[:, 0::2]
    if direction in ("vertical", "diagonal"):
        poly[:, 1::2] = height - poly[:, 1::2]
    flipped = flip_boxes(boxes, (height, width), direction, "le90")
    assert same_point_sets(boxes_to_polygons(flipped), poly)


def test_unknown_convention_is_an_error():
    with pytest.raises(ValueError, match="le90"):
        regularize_boxes(torch.zeros(1, 5), "le135")
