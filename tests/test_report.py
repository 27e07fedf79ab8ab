"""research/report.py: the metrics a report reads from the runs it compares with."""

import json

from research import report


def _write_metrics(folder, metrics):
  folder.mkdir(parents=True)
  (folder / "metrics.json").write_text(json.dumps(metrics))


def test_compared_metrics_reads_the_sibling_run_one_level_deep(tmp_path):
  # runs/fast_rcnn compared with runs/rcnn; R-CNN's metrics.json holds its own comparison.
  _write_metrics(tmp_path / "rcnn", {
      "test/mAP": 0.285, "steps": 1000, "finished": True, "name": "rcnn",
      "compare/fast_rcnn": str(tmp_path / "fast_rcnn"), "fast_rcnn/test/mAP": 0.227})
  found = report.compared_metrics(str(tmp_path / "fast_rcnn"), {"rcnn": ""})
  assert found == {"compare/rcnn": str(tmp_path / "rcnn"), "rcnn/test/mAP": 0.285,
                   "rcnn/steps": 1000}


def test_compared_metrics_of_a_run_not_there_are_only_its_folder(tmp_path):
  elsewhere = str(tmp_path / "elsewhere")
  assert report.compared_metrics(str(tmp_path / "fast_rcnn"), {"rcnn": elsewhere}) == {
      "compare/rcnn": elsewhere}
