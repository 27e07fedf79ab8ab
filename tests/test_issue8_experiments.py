"""Tiny end-to-end runs of experiments/zfnet_visualization.py, transfer.py and
augmentation.py through the real code: every run, figure, metric and claim."""

import json
import os

from research.launch import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
  return experiment.load_module(os.path.join(ROOT, "experiments", f"{name}.py"))


def _tiny(config, steps=2):
  config.data.train_split, config.data.eval_split = "train[:512]", "test[:256]"
  config.batch_size, config.eval_batch_size = 32, 128
  config.total_steps, config.num_epochs = steps, 0.0
  config.eval_every_steps = config.checkpoint_every_steps = 0
  return config


def _claims(workdir):
  with open(os.path.join(workdir, "claims.json")) as f:
    return json.load(f)


def test_augmentation_experiment_end_to_end(data_dir, tmp_path):
  module = _load("augmentation")
  config = _tiny(module.get_config())
  config.eval_train_examples = 64
  config.variants = ("none", module.RECIPE)
  module.validate_config(config)
  metrics = experiment.run_experiment(module, config, str(tmp_path), command="test")
  assert {"none/test/accuracy", "none/gap", f"{module.RECIPE}/test_gain"} <= set(metrics)
  for png in ("effects.png", "curves.png", "examples_fashion.png", "examples_photo.png"):
    assert os.path.exists(tmp_path / png), png
  measured = [c for c in _claims(tmp_path) if c["ours"] is not None]
  assert len(measured) == 2  # The recipe vs none; the single ops were not run.
  assert "effects.png" in (tmp_path / "report.md").read_text()


def test_transfer_experiment_end_to_end(data_dir, tmp_path):
  module = _load("transfer")
  config = _tiny(module.get_config())
  config.layers, config.conditions = (2,), ("BnB", "AnB+")
  config.recipe.total_steps = 0  # The recipe's runs are the same machinery: checked below.
  module.validate_config(config)
  metrics = experiment.run_experiment(module, config, str(tmp_path), command="test")
  assert {"baseA/test/accuracy", "BnB2/test/accuracy", "AnB+2/test/accuracy"} <= set(metrics)
  assert os.path.exists(tmp_path / "transfer.png")
  measured = {c["statement"][:20] for c in _claims(tmp_path) if c["ours"] is not None}
  assert len(measured) == 1  # AnB+ vs baseB; the others need more n or conditions.


def test_transfer_variants_copy_and_freeze_the_first_n_layers(tmp_path):
  module = _load("transfer")
  config = module.get_config()
  variants = module.fig2_variants(config, "w")
  assert len(variants) == 2 + 4 * 7
  anb3 = variants["AnB3"]
  assert anb3["init_from.workdir"] == os.path.join("w", "baseA")
  assert anb3["freeze"] == anb3["init_from.include_regex"] == "^(conv1|conv2|conv3)/"
  assert variants["BnB+3"]["freeze"] == "" and variants["BnB+3"]["data.classes"] == (2, 3, 4, 6, 7)
  recipe = module.recipe_variants(config, "w")
  assert recipe["digits_frozen"]["freeze"] == recipe["digits_frozen"]["init_from.include_regex"]
  assert "fc8" not in recipe["digits_finetuned"]["init_from.include_regex"]
  from research.train import config as config_lib
  for overrides in [*variants.values(), *recipe.values()]:
    module.validate_config(config_lib.override(config, overrides))


def test_zfnet_visualization_end_to_end(data_dir, tmp_path):
  module = _load("zfnet_visualization")
  config = _tiny(module.get_config())
  config.vis.examples, config.vis.maps_per_layer, config.vis.occlusion_images = 64, 2, 2
  config.vis.occlusion_stride, config.vis.layers, config.vis.occlusion_measured = 7, (1, 5), 3
  config.photos.total_steps, config.photos.batch_size, config.photos.grid_stride = 2, 8, 64
  config.photos.occlusion_stride = 16
  metrics = experiment.run_experiment(module, config, str(tmp_path), command="test")
  for name in ("fashion_mnist", "photos"):
    assert f"{name}/layer5/top9_class_purity" in metrics
    for png in (f"fig2_{name}_layer1.png", f"fig2_{name}_layer5.png", f"filters_{name}.png",
                f"fig7_{name}.png"):
      assert os.path.exists(tmp_path / png), png
  assert os.path.exists(tmp_path / "photos" / "checkpoints")
  assert all(c["ours"] is not None for c in _claims(tmp_path))
