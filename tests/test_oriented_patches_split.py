"""split_dota keeps every object: whole where >= iof_threshold of it is inside a patch, else clipped
to the patch (smallest rectangle around the part inside) and flagged difficult 2; counts per split."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monatune.data.dota import DOTA_V1_CLASSES, DotaDataset, read_dota_labels, write_dota_labels
from monatune.tasks.oriented.patch_objects import ObjectShapes, align_corners, min_area_rectangle, window_objects
from monatune.tasks.oriented.patches import SPLIT_VERSION, patch_windows, split_dota

# 1848 x 1024 with 1024 patches, overlap 200: two patches, x in [0, 1024) and [824, 1848) (824 = 1848 - 1024).
WIDTH, HEIGHT = 1848, 1024
LONG = [300, 500, 1500, 500, 1500, 520, 300, 520]  # 1200 x 20: 724/1200 = 0.603 and 676/1200 = 0.563 inside
INSIDE = [100.5, 100, 160.5, 100, 160.5, 130, 100.5, 130]  # wholly in the first patch only
OVERLAP = [900, 800, 950, 800, 950, 830, 900, 830]  # wholly in both patches
DIAMOND = [424, 512, 924, 12, 1424, 512, 924, 1012]  # square turned 45 deg, area 500000; 0.68 in each patch
SLIVER = [1023.5, 300, 1600, 300, 1600, 310, 1023.5, 310]  # 576.5 x 10: 0.5 px in patch 0, 0.97 in patch 1


def make_source(root: Path, polygons: list[list[float]], names: list[str], difficult: list[int]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)).save(root / "images" / "P2598.png")
    write_dota_labels(root / "labelTxt" / "P2598.txt", np.array(polygons, dtype=np.float64), names, difficult, {"gsd": "0.1"})
    return root


def patch_labels(dst: Path, name: str):
    return read_dota_labels(dst / "labelTxt" / f"{name}.txt", DOTA_V1_CLASSES)


def test_object_never_70_percent_inside_goes_clipped_and_difficult(tmp_path):
    src = make_source(tmp_path / "src", [LONG, INSIDE, OVERLAP], ["bridge", "plane", "ship"], [0, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped: no warning
        result = split_dota(src, tmp_path / "dst", patch_size=1024, overlap=200)
    assert result.patches == ["P2598__1__0___0", "P2598__1__824___0"]
    first, second = (patch_labels(tmp_path / "dst", n) for n in result.patches)
    # Patch 0: the bridge cut at x = 1024, the plane exact with its own flag, the ship shifted by 0.
    assert first.names == ["bridge", "plane", "ship"]
    np.testing.assert_array_equal(first.polygons[0], [300, 500, 1024, 500, 1024, 520, 300, 520])
    np.testing.assert_array_equal(first.polygons[1], INSIDE)
    np.testing.assert_array_equal(first.polygons[2], OVERLAP)
    assert first.difficult.tolist() == [2, 1, 0]
    assert first.header == {"gsd": "0.1"}
    # Patch 1 (x0 = 824): the bridge from 824 to 1500 -> 0 to 676; the ship shifted; no plane.
    assert second.names == ["bridge", "ship"]
    np.testing.assert_array_equal(second.polygons[0], [0, 500, 676, 500, 676, 520, 0, 520])
    np.testing.assert_array_equal(second.polygons[1], [76, 800, 126, 800, 126, 830, 76, 830])
    assert second.difficult.tolist() == [2, 0]
    counts = result.counts
    assert (counts.images, counts.patches, counts.objects) == (1, 2, 3)
    assert (counts.kept_whole, counts.clipped_only, counts.dropped) == (2, 1, 0)
    assert (counts.whole_copies, counts.clipped_copies, counts.dropped_objects) == (3, 2, [])
    json.dumps(counts.as_dict())  # what the split.json stamp records must be JSON
    assert SPLIT_VERSION >= 2  # version 1 left the bridge out: folders split then must be split again


def test_clipped_difficult_parts_train_unless_skip_difficult(tmp_path):
    src = make_source(tmp_path / "src", [LONG], ["bridge"], [0])
    split_dota(src, tmp_path / "dst", patch_size=1024, overlap=200, keep_empty=False)
    _, target = DotaDataset(tmp_path / "dst", DOTA_V1_CLASSES, skip_empty=True)[0]
    assert target["difficult"].tolist() == [True]
    np.testing.assert_allclose(target["boxes"][0, :4].numpy(), [662, 510, 724, 20])  # le90: cx, cy, w, h
    _, target = DotaDataset(tmp_path / "dst", DOTA_V1_CLASSES, skip_difficult=True)[0]
    assert len(target["labels"]) == 0


def test_diamond_cut_at_a_corner_keeps_its_smallest_rectangle(tmp_path):
    # Patch 0 holds the diamond without its right tip (x > 1024): a pentagon whose smallest rectangle is
    # the diamond itself (its top and bottom tips still bound it along both 45-degree axes; the upright
    # box of the pentagon, 600 x 1000, is larger than 500000).
    src = make_source(tmp_path / "src", [DIAMOND], ["roundabout"], [0])
    result = split_dota(src, tmp_path / "dst", patch_size=1024, overlap=200)
    first, second = (patch_labels(tmp_path / "dst", n) for n in result.patches)
    np.testing.assert_allclose(first.polygons[0], DIAMOND, atol=0.05)
    np.testing.assert_allclose(second.polygons[0], np.array(DIAMOND) - [824, 0] * 4, atol=0.05)
    assert first.difficult.tolist() == second.difficult.tolist() == [2]
    assert (result.counts.clipped_only, result.counts.clipped_copies) == (1, 2)


def test_sliver_is_left_out_but_the_object_is_kept(tmp_path):
    # 0.5 px of it lies in patch 0 (x < 1024): under min_clipped_side (1 px), so only patch 1 holds it (whole).
    src = make_source(tmp_path / "src", [SLIVER], ["bridge"], [0])
    result = split_dota(src, tmp_path / "dst", patch_size=1024, overlap=200)
    assert patch_labels(tmp_path / "dst", result.patches[0]).names == []
    np.testing.assert_array_equal(patch_labels(tmp_path / "dst", result.patches[1]).polygons[0], [199.5, 300, 776, 300, 776, 310, 199.5, 310])
    assert (result.counts.kept_whole, result.counts.clipped_copies, result.counts.dropped) == (1, 0, 0)
    again = split_dota(src, tmp_path / "all", patch_size=1024, overlap=200, min_clipped_side=0)
    np.testing.assert_array_equal(patch_labels(tmp_path / "all", again.patches[0]).polygons[0], [1023.5, 300, 1024, 300, 1024, 310, 1023.5, 310])


def test_objects_outside_the_image_are_dropped_with_a_warning(tmp_path):
    outside = [2000, 10, 2050, 10, 2050, 40, 2000, 40]
    edge_sliver = [1847.5, 10, 1900, 10, 1900, 40, 1847.5, 40]  # 0.5 px inside the image
    src = make_source(tmp_path / "src", [INSIDE, outside, edge_sliver], ["plane", "ship", "ship"], [0, 0, 0])
    with pytest.warns(UserWarning, match=r"2 object\(s\) in no patch"):
        result = split_dota(src, tmp_path / "dst", patch_size=1024, overlap=200)
    assert (result.counts.objects, result.counts.kept_whole, result.counts.dropped) == (3, 1, 2)
    assert result.counts.dropped_objects == [
        "P2598 #1 ship: outside the image",
        "P2598 #2 ship: only parts thinner than 1 px inside the patches",
    ]


def test_p2598_large_objects_are_clipped_where_the_old_rule_dropped_them():
    # Three large objects of DOTA's P2598 (the devkit's example labels) on a 2200 x 1900 image: windows at
    # x, y in {0, 824, 1176} x {0, 824, 876}; none holds 70 % of any of them (version 1 wrote none of the
    # three anywhere). Each overlaps 6 windows: the first two lie right of x = 1024 (2 columns, 3 rows),
    # the third spans x 582..1265 (3 columns) and y 337..843 (rows 0 and 824).
    objects = ObjectShapes.from_polygons(np.array([
        [1395, 526, 2041, 557, 1997, 1493, 1354, 1460],  # soccer-ball-field
        [1365, 255, 2129, 307, 2028, 1798, 1289, 1754],  # ground-track-field
        [606, 337, 1265, 367, 1245, 843, 582, 814],  # soccer-ball-field
    ], dtype=np.float64))  # fmt: skip
    found = [window_objects(objects, x0, y0, 1024) for x0, y0 in patch_windows(2200, 1900)]
    assert not any(f.whole.any() for f in found)
    assert sum(f.clipped for f in found).tolist() == [6, 6, 6]


def test_window_objects_zero_area_object_goes_where_its_centre_is():
    segment = ObjectShapes.from_polygons(np.array([[1000, 5, 1010, 5, 1010, 5, 1000, 5]], dtype=np.float64))
    assert window_objects(segment, 0, 0, 1024).whole.tolist() == [True]
    assert window_objects(segment, 1005, 0, 1024).whole.tolist() == [True]
    assert window_objects(segment, 1006, 0, 1024).whole.tolist() == [False]


def test_min_area_rectangle_and_corner_order():
    # A right triangle, legs 4 and 3 on the axes: 4 x 3 on the legs; on the hypotenuse 5 x 2.4 has the
    # same area 12, and the first edge, (0, 0) -> (4, 0), wins the tie.
    rect = min_area_rectangle(np.array([[0, 0], [4, 0], [0, 3]]))
    np.testing.assert_allclose(sorted(map(tuple, rect)), [(0, 0), (0, 3), (4, 0), (4, 3)], atol=1e-12)
    # A trapezoid (a rotated box cut by a window edge): smallest rectangle on its long parallel sides.
    rect = min_area_rectangle(np.array([[0, 0], [10, 0], [8, 2], [0, 2]]))
    np.testing.assert_allclose(sorted(map(tuple, rect)), [(0, 0), (0, 2), (10, 0), (10, 2)], atol=1e-12)
    # Order follows the reference: same turning direction, starting at the nearest shift.
    reference = np.array([[10, 2], [0, 2], [0, 0], [10, 0]], dtype=np.float64)
    aligned = align_corners(np.array([[0, 0], [10, 0], [10, 2], [0, 2]], dtype=np.float64), reference)
    np.testing.assert_array_equal(aligned, reference)
    with pytest.raises(ValueError, match="coincide"):
        min_area_rectangle(np.array([[1, 1], [1, 1], [1, 1]]))


def test_split_json_records_the_counts_and_an_older_split_is_redone(tmp_path):
    """split.json records split_version and the counts; a folder stamped by the old rule is split again."""
    import json

    from engine_helpers import tiny_task_config
    from monatune.engine.run import task_builders
    from monatune.tasks.oriented.patches import SPLIT_VERSION
    make_source(tmp_path / "data" / "train", [LONG, INSIDE], ["bridge", "plane"], [0, 0])
    data = {"dataset": "dota", "root": str(tmp_path / "data"), "train_split": "train", "val_split": "train",
            "image_size": 1024, "options": {"patch_size": 1024, "overlap": 200}}  # fmt: skip
    cfg = tiny_task_config(tmp_path, "oriented", "rotated_retinanet", {}, 15, "mona", data)
    task_builders("oriented")[1](cfg).prepare_data()
    stamp_path = tmp_path / "data" / "patches_1024_200" / "train" / "split.json"
    stamp = json.loads(stamp_path.read_text())
    assert stamp["split_version"] == SPLIT_VERSION
    assert {k: stamp["counts"][k] for k in ("objects", "kept_whole", "clipped_only", "dropped", "clipped_copies")} == {
        "objects": 2, "kept_whole": 1, "clipped_only": 1, "dropped": 0, "clipped_copies": 2}
    labels = stamp_path.parent / "labelTxt" / "P2598__1__824___0.txt"
    labels.write_text("")  # a folder split by version 1 (the bridge missing), with its old stamp
    old = {k: v for k, v in stamp.items() if k not in ("split_version", "counts")}
    stamp_path.write_text(json.dumps(old))
    task_builders("oriented")[1](cfg).prepare_data()
    assert labels.read_text().split()[-2:] == ["bridge", "2"]  # split again
    assert json.loads(stamp_path.read_text()) == stamp
    task_builders("oriented")[1](cfg).prepare_data()  # the new stamp matches: nothing redone
    assert json.loads(stamp_path.read_text()) == stamp


def test_a_corrupt_source_image_is_skipped_with_one_warning_or_refused_when_strict(tmp_path):
    """Issue 12 P7: a corrupt image among the DOTA sources must not kill the split (hours of other
    images) unless the user asked for strict data; either way the file is named."""
    src = make_source(tmp_path / "src", [INSIDE], ["plane"], [0])
    (src / "images" / "P0001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / "labelTxt" / "P0001.txt").write_text("")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\):\n  .*P0001.png: cannot decode"):
        result = split_dota(src, tmp_path / "dst", patch_size=1024, overlap=200)
    assert result.counts.images == 1 and all(n.startswith("P2598") for n in result.patches)
    assert len(result.counts.unreadable_images) == 1 and "unreadable" in result.counts.summary()
    with pytest.raises(ValueError, match=r"P0001.png: cannot decode .*data.strict is true"):
        split_dota(src, tmp_path / "strict", patch_size=1024, overlap=200, strict=True)
