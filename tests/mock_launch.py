"""`python tests/mock_launch.py <launch.py flags>`: launch.py on TFDS's mock data.

The paper recipes' end-to-end tests run the real entry point in a subprocess
(so a run can be killed with SIGKILL and resumed) on datasets nobody has
prepared here (`imagenet2012`, `cifar10`): inside
`tfds.testing.mock_data`, `tfds.data_source` serves random examples with the
dataset's real features (imagenet2012's images have variable sizes), the same
in every process. MOCK_EXAMPLES sets the examples per split (default 64).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow_datasets as tfds  # noqa: E402
from absl import app  # noqa: E402

import launch  # noqa: E402

if __name__ == "__main__":
  with tfds.testing.mock_data(num_examples=int(os.environ.get("MOCK_EXAMPLES", "64")),
                              policy=tfds.testing.MockPolicy.USE_CODE):
    app.run(launch.main_with_short_usage_errors, flags_parser=launch.parse_flags)
