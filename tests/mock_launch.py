"""`python tests/mock_launch.py <launch.py flags>`: launch.py on TFDS's mock data.

The paper recipes' end-to-end tests run the real entry point in a subprocess
(so a run can be killed with SIGKILL and resumed) on datasets nobody has
prepared here (`imagenet2012`, `cifar10`): inside
`tfds.testing.mock_data`, `tfds.data_source` serves random examples with the
dataset's real features (imagenet2012's images have variable sizes), the same
in every process. MOCK_EXAMPLES sets the examples per split (default 64).
MOCK_LOG_READS=<file>: append the example indices of every training-batch read
to <file> (one line each), to check which records a process reads.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow_datasets as tfds  # noqa: E402
from absl import app  # noqa: E402

import launch  # noqa: E402


def _log_training_reads(path: str) -> None:
  from research.data import pipeline
  train_stream = pipeline.train_stream

  def logged(read, *args, **kwargs):
    def read_and_log(idx):
      with open(path, "a") as f:
        f.write(" ".join(str(int(i)) for i in idx) + "\n")
      return read(idx)
    return train_stream(read_and_log, *args, **kwargs)

  pipeline.train_stream = logged


if __name__ == "__main__":
  if os.environ.get("MOCK_LOG_READS"):
    _log_training_reads(os.environ["MOCK_LOG_READS"])
  with tfds.testing.mock_data(num_examples=int(os.environ.get("MOCK_EXAMPLES", "64")),
                              policy=tfds.testing.MockPolicy.USE_CODE):
    app.run(launch.main_with_short_usage_errors, flags_parser=launch.parse_flags)
