"""Which objects of a large image go to one patch window, and as what (the rule of
:func:`~monatune.tasks.oriented.patches.split_dota`, ``SPLIT_VERSION`` 2).

Per window, with iof = (area of the object's polygon inside the window) / (its area):

- iof >= ``iof_threshold`` (0.7): the whole polygon, shifted, with the object's own difficult flag;
- 0 < iof < ``iof_threshold``: the part inside the window, reduced to the smallest-area rectangle around
  it (:func:`min_area_rectangle`; corners in the object's order, :func:`align_corners`), flagged
  difficult ``2``: the evaluator ignores it, training still uses it (``skip_difficult: false``). A part
  whose rectangle is thinner than ``min_clipped_side`` (1 px) is left out: a sub-pixel sliver along a
  patch border shows nothing of the object and, written at 0.1 px, can become a zero-width box;
- zero area (a point, a segment): the whole polygon in every window that holds its centre.

The DOTA devkit (ImgSplit) differs in four ways: it writes the clipped part also for 0.7 <= iof < 1
(with the object's flag); it keeps a clipped 4-gon as is, turns a 5-gon into 4 points by merging the
ends of its shortest edge and drops triangles and parts of 6 or more corners (here: always the
smallest rectangle, which is also what the detectors train on, ``polygons_to_boxes``, so a part is never
lost to its shape; it may reach past the window when the cut takes a corner off); it clamps the
coordinates to [1, size]; it drops zero-area objects and keeps slivers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box

CLIPPED_DIFFICULT = 2  # the DOTA devkit's difficult flag for the clipped part of an object
MIN_CLIPPED_SIDE = 1.0  # px: a thinner clipped part is a sliver, not an object


def min_area_rectangle(points: np.ndarray) -> np.ndarray:
    """Corners (4, 2) of the smallest-area rectangle around a convex polygon's corners ``points`` (K, 2),
    K >= 3, in order. One side of that rectangle lies on a polygon edge (Freeman & Shapira, 1975), so
    only the K edge directions are tried; the corners come counter-clockwise in x-right, y-up axes."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    edges = np.roll(points, -1, axis=0) - points
    lengths = np.linalg.norm(edges, axis=1)
    if not (lengths > 0).any():
        raise ValueError(f"min_area_rectangle: the {len(points)} points coincide; no rectangle")
    u = edges[lengths > 0] / lengths[lengths > 0, None]  # (E, 2) edge directions
    v = np.stack((-u[:, 1], u[:, 0]), axis=1)
    a, b = points @ u.T, points @ v.T  # (K, E) coordinates along u and v
    area = (a.max(0) - a.min(0)) * (b.max(0) - b.min(0))
    k = int(np.argmin(area))
    corners_ab = [(a[:, k].min(), b[:, k].min()), (a[:, k].max(), b[:, k].min()),
                  (a[:, k].max(), b[:, k].max()), (a[:, k].min(), b[:, k].max())]  # fmt: skip
    return np.array([ca * u[k] + cb * v[k] for ca, cb in corners_ab])


def _signed_area(corners: np.ndarray) -> float:
    x, y = corners[:, 0], corners[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2


def align_corners(rectangle: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The 4 corners of ``rectangle`` (4, 2) in ``reference``'s (4, 2) turning direction, starting at the
    cyclic shift closest to it (summed corner distances, as the devkit's ``choose_best_pointorder_fit_another``), so a
    clipped label keeps its object's first corner where it can."""
    if _signed_area(rectangle) * _signed_area(reference) < 0:
        rectangle = rectangle[::-1]
    shifts = [np.roll(rectangle, -s, axis=0) for s in range(4)]
    return min(shifts, key=lambda r: float(np.linalg.norm(r - reference, axis=1).sum()))


@dataclass
class ObjectShapes:
    """The polygons (N, 8) of one image, prepared once for all its windows: shapely shapes (the convex
    hull of an invalid polygon), areas (N,), axis-aligned bounds (N, 4) and centres (N, 2)."""

    polygons: np.ndarray
    shapes: list[Polygon]
    areas: np.ndarray
    bounds: np.ndarray
    centres: np.ndarray

    @classmethod
    def from_polygons(cls, polygons: np.ndarray) -> ObjectShapes:
        """Prepare the polygons (N, 8) of one image (pixel coordinates)."""
        polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
        shapes = []
        for poly in polygons:
            shape = Polygon(poly.reshape(4, 2))
            shapes.append(shape if shape.is_valid else shape.convex_hull)
        xs, ys = polygons[:, 0::2], polygons[:, 1::2]
        bounds = np.stack((xs.min(1), ys.min(1), xs.max(1), ys.max(1)), axis=1) if len(polygons) else np.zeros((0, 4))
        centres = np.stack((xs.mean(1), ys.mean(1)), axis=1) if len(polygons) else np.zeros((0, 2))
        return cls(polygons, shapes, np.array([s.area for s in shapes], dtype=np.float64), bounds, centres)

    def __len__(self) -> int:
        return len(self.polygons)


@dataclass
class WindowObjects:
    """What one patch window holds of an image's N objects: ``whole`` (N,) bool (whole polygon, shifted),
    ``clipped`` (N,) bool (the rectangle around the part inside, difficult), ``sliver`` (N,) bool (a part
    inside but thinner than ``min_clipped_side``: left out), ``polygons`` (N, 8) in patch coordinates
    (the rows of objects neither whole nor clipped: the shifted polygon)."""

    whole: np.ndarray
    clipped: np.ndarray
    sliver: np.ndarray
    polygons: np.ndarray


def window_objects(
    objects: ObjectShapes,
    x0: int,
    y0: int,
    patch_size: int,
    iof_threshold: float = 0.7,
    min_clipped_side: float = MIN_CLIPPED_SIDE,
) -> WindowObjects:
    """Which objects go to the patch at (x0, y0), and as what (the rule: module docstring)."""
    n = len(objects)
    whole, clipped, sliver = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    polygons = objects.polygons - np.tile([x0, y0], 4)
    x1, y1 = x0 + patch_size, y0 + patch_size
    cx, cy = objects.centres[:, 0], objects.centres[:, 1]
    degenerate = objects.areas <= 0
    whole[degenerate] = ((x0 <= cx) & (cx < x1) & (y0 <= cy) & (cy < y1))[degenerate]
    xmin, ymin, xmax, ymax = objects.bounds.T
    inside = (xmin >= x0) & (ymin >= y0) & (xmax <= x1) & (ymax <= y1) & ~degenerate
    whole[inside] = True
    window = shapely_box(x0, y0, x1, y1)
    overlapping = (xmin < x1) & (xmax > x0) & (ymin < y1) & (ymax > y0) & ~degenerate & ~inside
    for i in np.flatnonzero(overlapping):
        part = objects.shapes[i].intersection(window)
        iof = part.area / objects.areas[i]
        if iof >= iof_threshold:
            whole[i] = True
        elif iof > 0:
            corners = np.asarray(part.convex_hull.exterior.coords)[:-1]
            rectangle = min_area_rectangle(corners)
            sides = np.linalg.norm(rectangle[[1, 2]] - rectangle[[0, 1]], axis=1)
            if sides.min() < min_clipped_side:
                sliver[i] = True
                continue
            clipped[i] = True
            rectangle = align_corners(rectangle, objects.polygons[i].reshape(4, 2))
            polygons[i] = (rectangle - [x0, y0]).reshape(8)
    return WindowObjects(whole, clipped, sliver, polygons)


__all__ = [
    "CLIPPED_DIFFICULT",
    "MIN_CLIPPED_SIDE",
    "ObjectShapes",
    "WindowObjects",
    "align_corners",
    "min_area_rectangle",
    "window_objects",
]
