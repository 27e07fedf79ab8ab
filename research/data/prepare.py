"""Prepares a locally buildable dataset into a TFDS data_dir, without a download.

  python -m research.data.prepare fashion_mnist [--data_dir=DIR]
"""

from absl import app, flags

from research.data import builders, tfds_source

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: "
                                "$TFDS_DATA_DIR or ~/tensorflow_datasets).")


def main(argv):
  names = argv[1:]
  if not names:
    raise app.UsageError(f"Name the datasets to prepare: {sorted(builders.LOCAL_BUILDERS)}.")
  for name in names:
    print(builders.prepare(name, _DATA_DIR.value or tfds_source.default_data_dir()))


if __name__ == "__main__":
  app.run(main)
