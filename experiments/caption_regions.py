"""Karpathy & Fei-Fei 2015, §4.3 and Table 3: region-level generation, region generator vs. full-image generator.

The method (§3.1.4, §3.2, §4.3): the alignment model's inferred
region-phrase pairs on the training images become a training set of their
own (each region's crop with its phrases as captions), the multimodal RNN is
trained on it, and on the test images' annotated regions it is compared with
the same generator trained on full images and full sentences, with BLEU
against the regions' phrases. Table 3 (Flickr30K region annotations,
BLEU-1/2/3/4 x 100; from the paper's Table 3, not re-checked here): human
agreement 61.5 / 45.2 / 30.1 / 22.0, nearest neighbour 22.9 / 10.5 / 0.0 /
0.0, RNN full-frame model 14.2 / 6.0 / 2.2 / 0.0, RNN region-level model
35.2 / 23.0 / 16.1 / 14.8.

Here: the training pairs are inferred by a finished caption_alignment run
(experiments/caption_alignment.py, its `full` model; config.compare.
caption_alignment, default the sibling <dirname(workdir)>/caption_alignment)
on the training scenes config.data.train_split (train, the 5,000 scenes the
alignment trained on, whose regions, our Faster R-CNN's top 19 detections,
it cached), computed once and kept in <workdir>/train_pairs.json (written
atomically, reused on resume): every word of each of the 5 sentences goes to
a region by §3.1.4's MRF (eq. 10, Viterbi; config.regions.beta, 1; 0 is each
word's best region) and each (scene, detection) with words becomes one
training crop with its phrases (the whole image's words are left out). The
region generator is caption_generation's multimodal RNN and ConvEncoder
trained from scratch on those crops (resized to 32 px) through the one
training loop (launch.py; the caption_generation objective, RMSprop, clip 5,
beam 7); the full-image generator is a finished caption_generation run
(config.compare.caption_generation, default the sibling
<dirname(workdir)>/caption_generation: the multimodal RNN trained on the
whole 128-px scenes at 64 px and their full sentences, read from its newest
checkpoint, not retrained). Both decode every ground-truth object crop of the
1,000 test scenes (each at its own input size), scored against the object's
phrase (caption_scenes's objects/phrase, one reference per region) with
BLEU-1..4 and CIDEr-D (research/train/caption_metrics.py).

The MRF's beta (1) was chosen on the first 100 training scenes by the
phrases' agreement with those scenes' object phrases (region_phrases.agreement:
of the words on detections matching an object, the fraction in its phrase;
of its phrase's words, the fraction found), with the alignment run of
runs/caption_alignment (its 2,000-step default; word-region dot products of
std 0.83), 6.5 s:

  python -m benchmarks.region_phrase_beta --alignment=runs/caption_alignment --images=100

  beta   precision  recall  training regions  words per phrase
  0      37.0%      13.8%   1080              1.49
  0.25   37.5%      30.3%    642              3.10
  0.5    37.9%      41.3%    519              4.32
  1      37.4%      51.6%    408              5.96
  2      35.8%      57.9%    328              7.50
  4      32.5%      58.1%    288              9.54
  (words on random regions: 28.2% precision)

The rule: the largest beta that keeps the per-word argmax's (beta 0)
precision; larger betas join whole sentences into one "phrase" and lose
precision. With the earlier 400-step alignment run (runs/caption_alignment_400
here; dot products of std 0.32) the same rule gave 0.25: precision 33.7% /
33.4% / 31.9% / 30.7% at beta 0 / 0.25 / 0.5 / 1, recall 13.7% / 31.9% /
42.3% / 50.5% (random regions 29.5%).

Deviations: beta chosen as above, not as the paper's; our generated scenes
and a small CNN trained from scratch (no ImageNet VGG); the training phrases
are noisy (of the words the alignment puts on a detection matching an object,
37% are in its phrase, 28% for random regions).

Command:

  python launch.py --config=experiments/caption_regions.py --workdir=runs/caption_regions

(with finished runs in runs/caption_alignment and runs/caption_generation, or
--config.compare.caption_alignment=DIR --config.compare.caption_generation=DIR).

Runtime and result (2026-11-30, 2 idle cores, the alignment and generation
runs above): 5.3 min in all (2,000 steps at ~515 crops/s, train_time_s 246;
the training pairs inferred in under a minute); results/caption_regions/.
19,794 training regions with 32,505 phrases (36.4% of the words on detections
matching an object are in its phrase; 28.1% on random regions). Test: the
2,461 objects of the 1,000 test scenes, BLEU-1..4 / CIDEr-D x 100:

  region generator, beam 7 (the paper's)       30.5 / 15.5 / 6.6 / 0.0 / 29.0   5.3 words
  full-image generator, beam 7                 14.8 /  4.3 / 1.7 / 0.7 /  7.5   8.5 words
  region generator, beam length-normalised     25.0 / 12.7 / 5.8 / 2.4 / 21.5   6.6 words
  full-image generator, beam length-normalised 13.7 /  4.1 / 1.7 / 0.7 /  6.2   9.3 words

The region generator beats the full-image one on BLEU-1, BLEU-2 and CIDEr-D
(3 of 4 claims hold); not on BLEU-4, where neither has a 4-gram of a
4-word truth to speak of (0.0 vs 0.7). The paper: 35.2 / 23.0 / 16.1 / 14.8.
The same run with beta 0.25 (the rule's choice under the earlier alignment
run; runs/caption_regions_beta025 here, 33,299 regions) wrote 1.6-word
phrases that BLEU's brevity penalty punished: 15.7 / 7.2 / 0.0 / 0.0 / 41.7,
2 of 4 (BLEU-1 +0.9 points, under the claim's 1-point margin). The earlier
default, on the 400-step alignment run and 3,000 scenes (16.5 min on shared
cores): 9.9 / 1.7 / 0.0 / 0.0 / 19.1, 1 of 4.
"""

import os

from absl import logging
import jax
import ml_collections
import numpy as np

from research import errors
from research.data import caption_inputs, captions, region_captions, vocab
from research.errors import require
from research.eval import region_phrases, region_plots
from research.launch import multirun, trial
from research.report import Claim, compared_run
from research.train import caption_metrics, caption_regions, checkpoint, config as config_lib
from research.train import trainer
from research.train.objectives import caption_generation as objective_lib

STUDY_KEYS = ("compare", "regions", "arg")
PAIRS = "train_pairs.json"
FIGURE = "region_phrases.png"
SCORES = ("bleu1", "bleu2", "bleu3", "bleu4", "cider")
# Decodings of both generators ("": the paper's beam search, summed log-probabilities; the
# region generator's is the trainer's evaluation, metrics test/...), and the beam ranked by
# mean log-probability per token (metrics <prefix>/beam_normalised/...).
DECODINGS = {"": {}, "beam_normalised": {"length_normalise": True}}
# Table 3 (Flickr30K region annotations, BLEU-1..4 x 100), from the paper, not re-checked here.
PAPER_TABLE3 = {"human agreement": (61.5, 45.2, 30.1, 22.0),
                "nearest neighbour": (22.9, 10.5, 0.0, 0.0),
                "RNN: full-frame model": (14.2, 6.0, 2.2, 0.0),
                "RNN: region-level model": (35.2, 23.0, 16.1, 14.8)}
COMMANDS = {"caption_alignment": "python launch.py --config=experiments/caption_alignment.py "
                                 "--workdir={dir}",
            "caption_generation": "python launch.py --config=experiments/caption_generation.py "
                                  "--workdir={dir}"}


class RunMissing(errors.ConfigError):
  """A run this experiment reads (the alignment model, the full-image generator) is not there."""


def _newest_step(run_dir: str) -> int:
  """The newest checkpoint step named in run_dir/checkpoints (0: none)."""
  folder = os.path.join(run_dir, "checkpoints")
  names = os.listdir(folder) if os.path.isdir(folder) else []
  return max((int(n) for n in names if n.isdigit()), default=0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f"Unknown argument {arg!r} for experiments/caption_regions.py; it takes "
                     "none (the alignment and full-image runs are config.compare's).")
  config = config_lib.base_config()
  config.objective = objective_lib.default_objective()
  o = config.objective
  config.data.name = "caption_scenes"
  config.data.train_split = "train"  # The alignment run's scenes (regions cached).
  config.data.eval_split = "test"
  o.image_size = 32
  o.max_len, o.decode_len = 18, 17  # Phrases of up to 16 words; longer ones cut (logged).
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b2 = 0.999
  config.optimizer.warmup_steps = 50  # As caption_generation: RMSprop's first steps are large.
  config.num_epochs, config.total_steps = 0.0, 2000  # 6.5 epochs of the 19,794 regions.
  config.batch_size = 64
  config.eval_batch_size = 250
  config.log_every_steps = 50
  config.checkpoint_every_steps = 100
  config.eval_every_steps = 0  # At the end only.
  config.compare = ml_collections.ConfigDict({"caption_alignment": "",
                                              "caption_generation": ""})
  config.regions = ml_collections.ConfigDict()
  config.regions.beta = 1.0          # §3.1.4's MRF (0: each word's best region); docstring.
  config.regions.train_images = 0    # Training scenes whose pairs are inferred (0: all).
  config.regions.figure_scenes = 4
  config.regions.other_decodings = True  # DECODINGS beyond the paper's beam.
  config.arg = ""
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  r = config.regions
  require(r.beta >= 0, "regions.beta", r.beta, "must be >= 0 (0: each word's best region).")
  require(r.train_images >= 0, "regions.train_images", r.train_images, "must be >= 0 (0: all).")
  require(r.figure_scenes >= 0, "regions.figure_scenes", r.figure_scenes, "must be >= 0.")
  require(set(config.compare.keys()) == set(COMMANDS), "compare", config.compare,
          f"give exactly {sorted(COMMANDS)} (a workdir each, '' for the sibling folder).")
  trainer.validate_config(multirun.base_config(config, STUDY_KEYS))


def check_run(name: str, folder: str, run_dir: str) -> dict:
  """The config (dict) of the finished `name` run in `folder` (its model in
  run_dir); RunMissing, one line naming the command that makes it, otherwise."""
  missing = ("config.json" if not os.path.isfile(os.path.join(run_dir, "config.json")) else
             "vocab.json" if not os.path.isfile(os.path.join(run_dir, "vocab.json")) else
             "checkpoints/" if not _newest_step(run_dir) else None)
  if missing:
    raise RunMissing(
        f"config.compare.{name}={folder!r}: no finished {name} run there "
        f"({os.path.relpath(os.path.join(run_dir, missing), folder)} missing). To fix: "
        f"{COMMANDS[name].format(dir=folder)} (or point config.compare.{name} at a finished run).")
  config = trial.read_json(os.path.join(run_dir, "config.json"))
  if config.get("objective", {}).get("name") != name:
    raise RunMissing(f"config.compare.{name}={folder!r} holds a "
                     f"{config.get('objective', {}).get('name')!r} run, not a {name} one.")
  return config


def _alignment_config(config, alignment: dict, workdir: str, align_dir: str):
  """The alignment run's config, reading config.data's training split with its regions
  from the alignment's cache when it holds them, else computed into <workdir>/regions."""
  out = ml_collections.ConfigDict(alignment)
  o = out.objective
  with out.unlocked():
    out.data.data_dir = config.data.data_dir
    out.data.name = config.data.name
    own = os.path.join(align_dir, "regions")
    found = caption_regions.cache_path(own, config.data.name, config.data.train_split,
                                       o.num_regions)
    o.regions_cache = own if os.path.exists(found) else os.path.join(workdir, "regions")
  return out


def training_pairs(config, workdir: str, align_dir: str, alignment: dict) -> dict:
  """<workdir>/PAIRS: the alignment's region-phrase examples of the training
  scenes (region_phrases.region_examples), inferred once (atomic write) and
  read back while the alignment run, split, beta and image count are the same."""
  path = os.path.join(workdir, PAIRS)
  key = {"alignment": os.path.abspath(align_dir),
         "step": _newest_step(os.path.join(align_dir, "full")),
         "split": config.data.train_split, "beta": float(config.regions.beta),
         "train_images": int(config.regions.train_images)}
  cached = trial.read_json(path)
  if cached.get("key") == key:
    logging.info("Training region-phrase pairs read from %s.", path)
    return cached
  align_config = _alignment_config(config, alignment, workdir, align_dir)
  pairs, split = region_phrases.infer_split(
      align_config, os.path.join(align_dir, "full"), config.data.train_split,
      num_images=config.regions.train_images, beta=config.regions.beta)
  examples = region_phrases.region_examples(pairs)
  out = {"key": key, "method": region_phrases.method(config.regions.beta),
         "agreement": region_phrases.agreement(pairs, split), "sentences": len(pairs),
         "images": len(split), "examples": examples}
  os.makedirs(workdir, exist_ok=True)
  trial.write_json(path, out)
  logging.info("%d training regions with phrases from %d sentences of %d scenes; agreement %s.",
               len(examples), len(pairs), len(split), out["agreement"])
  return out


def _full_image_generator(gen_dir: str, gen_config: dict, test_regions):
  """(objective over the test crops at its own input size, the crops, its parameters,
  their step) of the full-image run."""
  config = ml_collections.ConfigDict(gen_config)
  with open(os.path.join(gen_dir, objective_lib.VOCAB_FILE)) as f:
    vocabulary = vocab.Vocabulary.from_json(f.read())
  o = config.objective
  crops = caption_inputs.CaptionInputSplit(test_regions, vocabulary, o.max_len,
                                           o.image_size or 64)
  objective = objective_lib.Objective(config, crops, 1, gen_dir)  # Checks its vocab.json.
  step, arrays = checkpoint.load_arrays(gen_dir)
  return objective, crops, arrays["params"], step


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Infers the training pairs, trains (or resumes) the region generator, then
  scores the full-image generator on the same test regions and draws the figure."""
  folders = {name: compared_run(workdir, name, config.compare[name])[0] for name in COMMANDS}
  align_dir, gen_dir = folders["caption_alignment"], folders["caption_generation"]
  alignment = check_run("caption_alignment", align_dir, os.path.join(align_dir, "full"))
  gen_config = check_run("caption_generation", gen_dir, gen_dir)
  base = multirun.base_config(config, STUDY_KEYS)
  o = base.objective

  test_scenes = captions.open_captions(base.data.name, base.data.eval_split, base.data.data_dir,
                                       download=base.data.download)
  test_regions = region_captions.RegionCaptionSplit.from_objects(test_scenes)  # Checked first.
  pairs = training_pairs(config, workdir, align_dir, alignment)
  scenes = captions.open_captions(base.data.name, base.data.train_split, base.data.data_dir,
                                  download=base.data.download)
  train_regions = region_captions.RegionCaptionSplit.from_examples(scenes, pairs["examples"])
  vocabulary = captions.build_vocabulary(train_regions, o.min_count)
  train = caption_inputs.CaptionInputSplit(train_regions, vocabulary, o.max_len, o.image_size)
  test = caption_inputs.CaptionInputSplit(test_regions, vocabulary, o.max_len, o.image_size)
  train.eval_splits = {"test": test}
  result = trainer.train(base, workdir, train_data=train)
  metrics = dict(result.metrics)
  metrics.update({"regions/train_regions": float(len(train_regions)),
                  "regions/train_phrases": float(len(train_regions.texts())),
                  "regions/test_regions": float(len(test_regions)),
                  **{f"regions/train_{k}": v for k, v in pairs["agreement"].items()}})
  if jax.process_index() != 0:
    return metrics

  region = objective_lib.Objective(base, train, 1, workdir)
  full, full_crops, full_params, full_step = _full_image_generator(gen_dir, gen_config,
                                                                   test_regions)
  metrics["full_image/steps"] = float(full_step)
  metrics.update({f"compare/{name}": os.path.abspath(folder) for name, folder in folders.items()})
  references = test.references(np.arange(len(test)))
  decoded = {}
  for name, objective, params, crops in (("region", region, result.state.params, test),
                                         ("full_image", full, full_params, full_crops)):
    for decoding, kwargs in DECODINGS.items():
      if decoding and not config.regions.other_decodings:
        continue
      texts = objective_lib.decoded_captions(objective, params, crops, base.eval_batch_size,
                                             **kwargs)
      scores = caption_metrics.caption_scores(references, texts)
      scores["mean_length"] = float(np.mean([len(c.split()) for c in texts]))
      prefix = "/".join(p for p in ("" if name == "region" else name, "test", decoding) if p)
      if (name, decoding) != ("region", ""):  # The trainer's evaluation scored that one.
        metrics.update({f"{prefix}/{k}": v for k, v in scores.items()})
      decoded[name, decoding] = texts

  if config.regions.figure_scenes:
    shown = np.flatnonzero(test_regions.scene_index < config.regions.figure_scenes)
    draw(test_scenes, test_regions, shown, [decoded["region", ""][i] for i in shown],
         [decoded["full_image", ""][i] for i in shown], os.path.join(workdir, FIGURE))
  return metrics


def draw(test_scenes, test_regions, shown, generated, full, path: str) -> str:
  """The first test scenes with their objects' boxes, each with the region
  generator's phrase, the full-image generator's and the ground truth."""
  panels = {}
  for i, g, f in zip(shown, generated, full):
    scene = int(test_regions.scene_index[i])
    panel = panels.setdefault(scene, {"image": test_scenes[scene].image, "regions": []})
    panel["regions"].append({"box": test_regions.boxes[i].tolist(), "lines": [
        ("region RNN", g), ("full-image RNN", f), ("truth", test_regions.captions(i)[0])]})
  return region_plots.draw(list(panels.values()), path,
                           title="Test scenes: each object's phrase by the region generator, "
                                 "by the full-image generator, and the ground truth")


MARGIN = 0.01  # As caption_generation's: a win needs more than one point (x 100).


def claims(config: ml_collections.ConfigDict) -> list[Claim]:
  region, full = PAPER_TABLE3["RNN: region-level model"], PAPER_TABLE3["RNN: full-frame model"]
  out = []
  for key, label, k in (("bleu1", "BLEU-1", 0), ("bleu2", "BLEU-2", 1), ("bleu4", "BLEU-4", 3),
                        ("cider", "CIDEr-D", None)):
    out.append(Claim(
        source="Karpathy & Fei-Fei 2015, §4.3, Table 3",
        statement=f"The region generator (trained on the alignment's inferred region-phrase "
                  f"pairs) beats a full-image generator on the test regions' phrases, {label}.",
        paper=(f"{label} x 100: region {region[k]:.1f} vs. full frame {full[k]:.1f}"
               if k is not None else "not in Table 3 (BLEU only)"),
        measure=lambda m, key=key: m[f"test/{key}"] - m[f"full_image/test/{key}"],
        check=lambda d: d > MARGIN,
        check_text=f"region minus full-image {label} > {MARGIN} (test regions)",
        fmt="{:+.4f}"))
  return out


def notes(config: ml_collections.ConfigDict, metrics: dict) -> str:
  lines = ["| method | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr-D | words |",
           "|---|---|---|---|---|---|---|"]

  def row(name, prefix):
    cells = ["not measured" if metrics.get(f"{prefix}/{k}") is None
             else f"{100 * metrics[f'{prefix}/{k}']:.1f}" for k in SCORES]
    length = metrics.get(f"{prefix}/mean_length")
    lines.append(f"| {name} | " + " | ".join(cells)
                 + f" | {'—' if length is None else f'{length:.1f}'} |")

  row("ours: region generator (multimodal RNN on inferred region-phrase pairs)", "test")
  row("ours: full-image generator (caption_generation run, whole scenes)", "full_image/test")
  row("ours: region generator, beam length-normalised", "test/beam_normalised")
  row("ours: full-image generator, beam length-normalised", "full_image/test/beam_normalised")
  for name, values in PAPER_TABLE3.items():
    lines.append(f"| paper, Flickr30K regions: {name} | "
                 + " | ".join(f"{v:.1f}" for v in values) + " | — | — |")
  count = lambda k: f"{metrics[k]:.0f}" if k in metrics else "?"  # noqa: E731
  precision = metrics.get("regions/train_word_precision")
  random = metrics.get("regions/train_random_word_precision")
  quality = (f" Of the words on training detections that match an object (IoU >= 0.5), "
             f"{precision:.1%} are in its phrase ({random:.1%} with random regions)."
             if precision is not None and random is not None else "")
  return ("Scores x 100 against each test object's phrase (one reference per region; "
          "pycocoevalcap BLEU and CIDEr-D, our tokeniser); words: mean generated length. "
          "The paper's rows are Flickr30K's region annotations, ours generated scenes: the "
          "comparison is the ordering, not the values.\n\n" + "\n".join(lines)
          + f"\n\nTraining pairs: {count('regions/train_regions')} regions with "
          f"{count('regions/train_phrases')} phrases ({PAIRS}; beta "
          f"{config.regions.beta:g}: {region_phrases.method(config.regions.beta)}){quality} "
          f"Test: {count('regions/test_regions')} object regions of {config.data.eval_split}. "
          f"Full-image generator: {metrics.get('compare/caption_generation', 'the sibling run')}"
          f", step {count('full_image/steps')}.\n\n![region phrases]({FIGURE})\n")
