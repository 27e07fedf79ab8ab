"""§3.1.4's MRF beta against the agreement of the inferred phrases with the objects' phrases.

  python -m benchmarks.region_phrase_beta --alignment=runs/caption_alignment --images=100

Embeds the first `--images` scenes of the alignment run's training split once
(its `full` model, newest checkpoint, regions from its cache), then for each
beta infers the region phrases (research/eval/region_phrases.py: infer,
mrf_alignment) and prints region_phrases.agreement (of the words on detections
matching an object at IoU >= 0.5, the fraction in its phrase, and of the
objects' phrase words, the fraction found; beside words on random regions),
the training regions it would give (region_examples) and their mean words per
phrase. experiments/caption_regions.py's default beta comes from this table.
"""

import argparse
import json
import os

import jax
import ml_collections
import numpy as np

from research.eval import region_phrases


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--alignment", default="runs/caption_alignment")
  parser.add_argument("--images", type=int, default=100)
  parser.add_argument("--betas", default="0,0.25,0.5,1,2,4")
  args = parser.parse_args()
  run_dir = os.path.join(args.alignment, "full")
  with open(os.path.join(run_dir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.objective.regions_cache = os.path.join(args.alignment, "regions")
  outputs, split = region_phrases.embed_split(config, run_dir, config.data.train_split,
                                              num_images=args.images)
  d = outputs[0]
  dots = np.asarray(d["words"][0, 0]) @ np.asarray(d["regions"][0]).T
  print(f"{split.split.what}, first {len(split)} images; word-region dot products of one "
        f"sentence: std {dots.std():.2f}")
  print("beta   precision  recall  random  training regions  words per phrase")
  for beta in (float(b) for b in args.betas.split(",")):
    pairs = region_phrases.infer(outputs, split, beta)
    a = region_phrases.agreement(pairs, split)
    examples = region_phrases.region_examples(pairs)
    words = np.mean([len(p.split()) for e in examples for p in e["phrases"]])
    print(f"{beta:<6g} {a['word_precision']:9.1%} {a['word_recall']:7.1%} "
          f"{a['random_word_precision']:7.1%} {len(examples):17d} {words:17.2f}")


if __name__ == "__main__":
  jax.config.parse_flags_with_absl()
  main()
