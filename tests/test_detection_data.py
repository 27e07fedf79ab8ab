"""Detection data (issue 16): the scenes, COCO export, VOC and COCO AP (the reader on
voc/2007 and coco/2017 layouts and bad annotations: test_detection_reader.py)."""

import glob
import json
import os

import numpy as np
from PIL import Image
import pytest

from research.data import datasets, detection, reader, scene_builders, scenes
from research.train import detection_metrics as dm
from research.ops import boxes as box_ops
from tests import detection_runs
from tests.detection_runs import TINY_SPLITS


def _pools(data_dir, split):
  return {name: scene_builders.open_pool(name, *scene_builders.POOLS[split][name], data_dir)
          for name in scenes.SOURCES}


def _make(data_dir, split, n):
  config = scene_builders.SceneBuilder.CONFIG
  return scene_builders.make_scenes(range(n), scene_builders.SPLIT_NUMBERS[split], 0,
                                    _pools(data_dir, split),
                                    scenes.load_backgrounds(config.background_short_side),
                                    config)


# --- The scenes --------------------------------------------------------------------


def test_the_same_seed_gives_the_same_bytes(tiny_scenes, tmp_path_factory, data_dir):
  build, root = detection_runs.build_scenes, detection_runs.scenes_root
  again = build(root(tmp_path_factory, data_dir, "again"))
  other = build(root(tmp_path_factory, data_dir, "other"), seed=1)
  for path in glob.glob(os.path.join(tiny_scenes[1], "*.array_record-*")):
    with open(path, "rb") as f, open(os.path.join(again, os.path.basename(path)), "rb") as g:
      assert f.read() == g.read(), os.path.basename(path)
  first = lambda folder: reader.open_prepared(folder, "train")[0][0]["image"]
  assert np.array_equal(first(tiny_scenes[1]), first(again))
  assert not np.array_equal(first(tiny_scenes[1]), first(other))


def test_visible_boxes_by_hand():
  # Object 0 is a 4x6 block at rows 2-5, cols 1-6; object 1, drawn later, covers
  # its columns 4-6 and rows 0-9 of column 8: object 0's box shrinks to columns 1-3.
  masks = np.zeros((2, 10, 10), bool)
  masks[0, 2:6, 1:7] = True
  masks[1, 0:8, 4:7] = True
  masks[1, 9, 8] = True
  np.testing.assert_array_equal(scenes.visible_boxes(masks), [[2, 1, 6, 4], [0, 4, 10, 9]])


def test_each_box_encloses_exactly_its_objects_visible_pixels(tiny_scenes, data_dir):
  made = _make(data_dir, "train", TINY_SPLITS["train"])
  stored = reader.open_prepared(tiny_scenes[1], "train")[0]
  config = scene_builders.SceneBuilder.CONFIG
  checked = 0
  for k, scene in enumerate(made):
    drawn = scene.masks.any(0)
    # Nothing is drawn outside the objects' masks: there the scene is the photo.
    np.testing.assert_array_equal(scene.image[~drawn], scene.background[~drawn])
    for j in range(len(scene.labels)):
      visible = scene.masks[j] & ~scene.masks[j + 1:].any(0)
      rows, cols = np.nonzero(visible)
      assert scene.boxes[j].tolist() == [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
      assert visible.sum() >= config.min_visible * scene.masks[j].sum()
      # The object was drawn: its visible pixels are not all the photo's.
      assert (scene.image[visible] != scene.background[visible]).any()
      checked += 1
    # The stored example is this scene (boxes exact: k / 128 is exact in float32).
    record = stored[k]
    np.testing.assert_array_equal(record["image"], scene.image)
    boxes = np.asarray(record["objects"]["bbox"], np.float32).reshape(-1, 4) * config.size
    np.testing.assert_array_equal(boxes, scene.boxes)
    np.testing.assert_array_equal(np.asarray(record["objects"]["label"]).reshape(-1),
                                  scene.labels)
  assert checked > 40


def test_empty_scenes_tiny_objects_and_overlaps_occur(tiny_scenes):
  objects, empty, overlapping = [], 0, 0
  for split, n in TINY_SPLITS.items():
    data = detection.open_detection("scenes_tiny", split, tiny_scenes[0])
    assert len(data) == n and data.class_names == scenes.CLASS_NAMES
    for i in range(n):
      boxes = data.annotation(i).boxes * 128
      empty += len(boxes) == 0
      objects.extend(boxes)
      overlapping += any(dm.iou(b, np.delete(boxes, j, 0)).max(initial=0) > 0
                         for j, b in enumerate(boxes))
    counts = detection.summary(data)
    assert counts["examples"] == n
    assert counts["objects"] == sum(len(data.annotation(i).labels) for i in range(n))
  sides = np.array([[b[2] - b[0], b[3] - b[1]] for b in objects])
  assert empty >= 1 and overlapping >= 5
  assert (sides.prod(1) < 16 * 16).any() and sides.min() <= 8  # Tiny ones.
  assert sides.max() >= 60  # And big ones (3x items are 84 px).


def test_splits_draw_from_disjoint_items(tiny_scenes, data_dir):
  used = {}
  for split in TINY_SPLITS:
    pools = scene_builders.POOLS[split]
    used[split] = {(name, pools[name][0], pools[name][1] + k)
                   for scene in _make(data_dir, split, TINY_SPLITS[split])
                   for name, k in scene.items}
    assert all(pools[name][1] + k < pools[name][2] for name, _, k in
               [(n, s, i - pools[n][1]) for n, s, i in used[split]])
  assert not used["train"] & used["validation"] and not used["train"] & used["test"]
  assert not used["validation"] & used["test"]
  images = {split: {r["image"].tobytes() for r in reader.read_records(
      reader.open_prepared(tiny_scenes[1], split)[0], range(n))} for split, n in TINY_SPLITS.items()}
  assert not images["train"] & images["test"] and not images["train"] & images["validation"]


def test_bad_scene_configs_are_refused():
  with pytest.raises(ValueError, match=r"scale_range=\(0.5, 5.0\)"):
    scenes.SceneConfig(scale_range=(0.5, 5.0))
  with pytest.raises(ValueError, match="unknown split"):
    scene_builders.make_scene_builder("x", splits={"val": 3})


def test_the_registered_scenes_are_known():
  known = datasets.get("detection_scenes")
  assert known.num_classes == len(scenes.CLASS_NAMES) == 20
  assert known.splits == scene_builders.SceneBuilder.SPLITS
  assert known.image_shape == (128, 128, 3)


# --- COCO export -------------------------------------------------------------------


def test_coco_export_reads_back_with_pycocotools(tiny_scenes, tmp_path):
  from pycocotools.coco import COCO
  data = detection.open_detection("scenes_tiny", "test", tiny_scenes[0])
  path = tmp_path / "test.json"
  path.write_text(json.dumps(detection.to_coco(data)))
  coco = COCO(str(path))
  assert sorted(coco.getImgIds()) == list(range(len(data)))
  assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(scenes.CLASS_NAMES)
  for i in range(len(data)):
    example = data[i]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[i]))
    assert len(anns) == len(example.labels)
    for ann, (ymin, xmin, ymax, xmax), label in zip(anns, example.boxes, example.labels):
      assert ann["bbox"] == [xmin, ymin, xmax - xmin, ymax - ymin]
      assert ann["category_id"] == label + 1 and ann["iscrowd"] == 0
    assert coco.imgs[i]["height"] == coco.imgs[i]["width"] == 128


# --- AP ----------------------------------------------------------------------------


def _det(boxes, scores, labels):
  return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores),
          "labels": np.asarray(labels)}


def test_voc_ap_on_a_case_computed_by_hand():
  a, b = [0, 0, 20, 20], [50, 50, 70, 70]  # Image 0, class 0.
  c, d = [0, 0, 10, 10], [30, 30, 40, 40]  # Image 1, class 0; d is difficult.
  e = [60, 60, 70, 70]                     # Image 1, class 1.
  truth = [{"boxes": [a, b], "labels": [0, 0], "difficult": [False, False]},
           {"boxes": [c, d, e], "labels": [0, 0, 1], "difficult": [False, True, False]}]
  detections = [
      _det([a, [0, 0, 20, 19], [100, 100, 110, 110]], [0.9, 0.8, 0.5], [0, 0, 0]),
      _det([d, [0, 0, 10, 6], [60, 60, 70, 65], [0, 0, 5, 5]], [0.7, 0.6, 0.4, 0.3],
           [0, 0, 1, 2])]
  # Class 0, 3 positives (a, b, c). By score: 0.9 hits a (TP); 0.8 hits a again
  # (IoU 0.95, taken: FP); 0.7 hits difficult d (ignored); 0.6 hits c (IoU 0.6:
  # TP); 0.5 hits nothing (FP). Recall 1/3, 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 1/2,
  # 2/3, 1/2 (the ignored detection repeats the point before it, as in the devkit).
  # 11-point: recall >= 0, .1, .2, .3 -> 1; >= .4, .5, .6 -> 2/3; >= .7 .. 1 -> 0:
  # AP = (4 + 3 * 2/3) / 11 = 6/11. Area under the envelope: 1/3 * 1 + 1/3 * 2/3 = 5/9.
  # Class 1: one detection at IoU exactly 0.5 with e (50 / 100 px): a TP (>= 0.5), AP 1.
  # Class 2: no ground truth, AP undefined and left out of the mean.
  result = dm.voc_eval(detections, truth, 3)
  np.testing.assert_allclose(result["recall"][0], [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
  np.testing.assert_allclose(result["precision"][0], [1, 1 / 2, 1 / 2, 2 / 3, 1 / 2])
  np.testing.assert_allclose(result["ap"][:2], [6 / 11, 1.0])
  assert np.isnan(result["ap"][2]) and result["num_positives"].tolist() == [3, 1, 0]
  assert result["mAP"] == pytest.approx((6 / 11 + 1) / 2)
  area = dm.voc_eval(detections, truth, 3, use_07_metric=False)
  assert area["ap"][0] == pytest.approx(5 / 9)
  with pytest.raises(ValueError, match="1 images of detections for 2 images"):
    dm.voc_eval(detections[:1], truth, 3)


def test_the_metrics_iou_is_the_ops_iou():
  rng = np.random.default_rng(0)
  corners = rng.uniform(0, 50, (2, 30, 2, 2))
  a, b = (np.concatenate([c.min(1), c.max(1)], -1) for c in corners)  # [30, 4] each.
  a[0, 2] = a[0, 0]  # A degenerate box: IoU 0.
  expected = np.asarray(box_ops.pairwise_iou(a.astype(np.float32), b.astype(np.float32)))
  np.testing.assert_allclose([dm.iou(box, b) for box in a], expected, atol=1e-5)
  assert expected[0].max() == 0 and (expected > 0).any()


def test_coco_ap_is_one_on_perfect_detections_and_lower_on_perturbed(tiny_scenes):
  data = detection.open_detection("scenes_tiny", "train", tiny_scenes[0])
  truth = detection.to_coco(data)
  examples = data.examples(range(len(data)))
  perfect = [_det(e.boxes, np.ones(len(e.labels)), e.labels) for e in examples]
  assert dm.coco_eval(perfect, truth)["AP"] == pytest.approx(1.0)
  assert dm.voc_eval(perfect, examples, 20)["mAP"] == pytest.approx(1.0)
  shifted = [_det(e.boxes + 2.0, np.ones(len(e.labels)), e.labels) for e in examples]
  stats = dm.coco_eval(shifted, truth)
  assert 0.0 < stats["AP"] < 0.9 and stats["AP50"] > stats["AP75"]
  nothing = [_det([], [], []) for _ in examples]
  assert dm.coco_eval(nothing, truth)["AP"] == 0.0


# --- The picture -------------------------------------------------------------------


def test_scene_grid_draws_ground_truth_and_detections(tiny_scenes, tmp_path):
  from research.eval import detection_plots
  data = detection.open_detection("scenes_tiny", "test", tiny_scenes[0])
  examples = data.examples(range(4))
  detections = [_det(e.boxes, np.full(len(e.labels), 0.9), e.labels) for e in examples]
  path = detection_plots.scene_grid(examples, data.class_names, str(tmp_path / "grid.png"),
                                    detections=detections, ncols=2)
  assert Image.open(path).size[0] > 300


@pytest.mark.slow
def test_the_full_scenes_have_their_registered_statistics(data_dir, tmp_path):
  # Prepares the whole dataset (about 2 minutes here).
  root = tmp_path / "full"
  root.mkdir()
  for source in scenes.SOURCES:
    os.symlink(os.path.join(data_dir, source), root / source)
  known = datasets.get("detection_scenes")
  train = detection.open_detection("detection_scenes", "train", str(root))
  for split, n in known.splits.items():
    assert len(detection.open_detection("detection_scenes", split, str(root))) == n
  pixels = np.stack([e.image for e in train.examples(range(len(train)))]) / 255.0
  np.testing.assert_allclose(pixels.mean((0, 1, 2)), known.mean, atol=1e-3)
  np.testing.assert_allclose(pixels.std((0, 1, 2)), known.std, atol=1e-3)
