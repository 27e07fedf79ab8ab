"""The input pipelines on data that does not fit in memory: TFDS's mock
imagenet2012 (variable-size images) streamed, preprocessed and resumed."""

import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from research import errors
from research.data import datasets, inputs, pipeline, reader, streaming
from tests.conftest import ROOT, final_params, free_port
from tests import streaming_experiment

MOCK_EXAMPLES = 24


def _mock():
  return tfds.testing.mock_data(num_examples=MOCK_EXAMPLES,
                                policy=tfds.testing.MockPolicy.USE_CODE)


def _data_config(**overrides):
  data = streaming_experiment.get_config().data
  for key, value in overrides.items():
    data[key] = value
  return data


def _batches(split, n, **kwargs):
  it = split.train_batches(8, 0, **kwargs)
  return [next(it) for _ in range(n)]


def test_streaming_and_memory_give_the_same_preprocessed_batches():
  with _mock():
    streamed = inputs.open_split(_data_config(), "train")
    in_memory = inputs.open_split(_data_config(pipeline="memory"), "train")
    assert isinstance(streamed, streaming.StreamingSplit)
    assert isinstance(in_memory, pipeline.MemorySplit)
    assert len({np.asarray(im).shape for im in in_memory.data.images}) > 1  # Sizes vary.
    a, b = _batches(streamed, 4), _batches(in_memory, 4, prefetch=0)
    resumed = _batches(streamed, 2, start_step=2)
    evals = [list(s.eval_batches(16)) for s in (streamed, in_memory)]
  for x, y in zip(a, b):
    assert x["image"].shape == (8, 32, 32, 3) and x["image"].dtype == np.uint8
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  for x, y in zip(a[2:], resumed):  # A pure function of (seed, step, row).
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not np.array_equal(a[0]["image"], a[1]["image"])
  assert streamed.image_shape == in_memory.image_shape == (32, 32, 3)
  assert streamed.num_classes == 1000
  for x, y in zip(*evals):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert [b["mask"].sum() for b in evals[0]] == [16, MOCK_EXAMPLES - 16]


class _CountingSource:
  """A source that records the keys read."""

  def __init__(self, source):
    self.source, self.read = source, []

  def __len__(self):
    return len(self.source)

  def __getitem__(self, key):
    self.read.append(key)
    return self.source[key]


def test_each_process_reads_only_its_rows_of_the_global_batch():
  with _mock():
    source, info = tfds.data_source("imagenet2012", split="train", download=False), None
    info = source.dataset_info
    pp = dict(train_pp="inception_crop(32)|flip_lr", eval_pp="central_crop(8)")
    full = _batches(streaming.StreamingSplit(_CountingSource(source), info, **pp), 1,
                    prefetch=0)[0]
    parts, reads = [], []
    for i in range(2):
      counting = _CountingSource(source)
      split = streaming.StreamingSplit(counting, info, **pp)
      parts.append(_batches(split, 1, process_index=i, process_count=2, prefetch=0)[0])
      reads.append(counting.read)
  assert len(reads[0]) == len(reads[1]) == 4 and not set(reads[0]) & set(reads[1])
  expected = np.sort(pipeline.index_batches(MOCK_EXAMPLES, 8, 0)[0])
  assert sorted(reads[0] + reads[1]) == expected.tolist()
  for key in ("image", "label"):  # Together: exactly the one-process batch, row for row.
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), full[key])


def test_variable_size_images_need_preprocessing_that_ends_at_one_size():
  with _mock():
    with pytest.raises(errors.ConfigError, match=r"config.data.train_pp='': imagenet2012's "
                       r"images vary in size \(None, None, 3\).*end it with a crop"):
      inputs.open_split(_data_config(pipeline="memory", train_pp="", eval_pp=""), "train")
    with pytest.raises(errors.ConfigError, match=r"config.data.eval_pp='resize_small\(36\)'"):
      inputs.open_split(_data_config(eval_pp="resize_small(36)"), "train")
    # Evaluated larger than trained (multi-crop test views): two shapes.
    split = inputs.open_split(_data_config(eval_pp="resize_small(48)|central_crop(40)"),
                              "train")
    assert (split.image_shape, split.eval_image_shape) == ((32, 32, 3), (40, 40, 3))
    assert next(split.eval_batches(8))["image"].shape == (8, 40, 40, 3)
    assert split.sample_images(3).shape == (3, 40, 40, 3)
    with pytest.raises(errors.ConfigError, match=r"config.data.classes=\(1, 2\)"):
      inputs.open_split(_data_config(classes=(1, 2)), "train")


def test_auto_keeps_fixed_size_data_that_fits_in_memory(caplog):
  data = _data_config(pipeline="auto", memory_budget_gb=1.0)
  assert inputs.choose(data, 10, (None, None, 3))[0] == "streaming"
  assert inputs.choose(data, 50_000, (32, 32, 3))[0] == "memory"
  mode, reason = inputs.choose(data, 1_281_167, (256, 256, 3))
  assert mode == "streaming" and "251.9 GB, over data.memory_budget_gb=1.0" in reason
  caplog.set_level(logging.INFO)
  with _mock():
    cifar = inputs.open_split(_data_config(name="cifar10", pipeline="auto", train_pp="",
                                           eval_pp="", classes=()), "train")
  assert isinstance(cifar, pipeline.MemorySplit) and cifar.image_shape == (32, 32, 3)
  assert "Input cifar10[train]: decoded into memory (decoded it takes 0.00 GB" in caplog.text


@pytest.mark.parametrize("name", ["cifar10", "imagenet2012"])
def test_default_statistics_of_rgb_datasets_have_three_channels(name):
  mean, std = datasets.normalization(name, (), ())
  assert len(mean) == len(std) == 3
  datasets.check_channels(name, mean, 3)  # What the objective checks against the images.
  with pytest.raises(errors.ConfigError, match="has 3 channel"):
    datasets.normalization(name, (0.5,), (0.5,))


def test_long_decoding_logs_its_progress(caplog):
  caplog.set_level(logging.INFO)
  with _mock():
    source = tfds.data_source("imagenet2012", split="train", download=False)
    split = reader.decode(source, source.dataset_info, chunk=8, log_every_s=0.0, what="x")
  assert len(split) == MOCK_EXAMPLES and split.images.dtype == object
  assert "Decoding x: 8 of 24 examples (33%)" in caplog.text
  assert "examples/s, about" in caplog.text


def _launch(tmp_path, workdir, arg="", kill_at=None):
  """launch.py on the mock data, in a subprocess (tests/mock_launch.py)."""
  del tmp_path  # The workdir is the run's only file.
  env = {**os.environ, "MOCK_EXAMPLES": str(MOCK_EXAMPLES)}
  if kill_at is not None:
    env["RESEARCH_TEST_SIGKILL_AT_STEP"] = str(kill_at)
  config = "tests/streaming_experiment.py" + (f":{arg}" if arg else "")
  return subprocess.run([sys.executable, os.path.join(ROOT, "tests", "mock_launch.py"),
                         f"--config={config}", f"--workdir={workdir}"],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def _straight_run(tmp_path):
  """An uninterrupted streamed run (no worker processes): its final parameters."""
  straight = tmp_path / "straight"
  result = _launch(tmp_path, straight)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "streamed, 0 worker process(es) (data.pipeline='streaming')" in result.stderr
  rows = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
  assert any("test/accuracy" in r for r in rows) and any("train_eval/loss" in r for r in rows)
  evals = [r for r in rows if "test/loss" in r]  # (A train_time_s row follows each checkpoint.)
  assert evals[-1]["step"] == rows[-1]["step"] and np.isfinite(evals[-1]["test/loss"])
  return final_params(str(straight))[1]


def _kill_and_resume(tmp_path, arg):
  killed = tmp_path / f"killed_{arg}"
  result = _launch(tmp_path, killed, arg, kill_at=3)
  # communicate() returned: the grain workers died with the killed process
  # (else they would hold its output pipes open).
  assert result.returncode == -9, result.stderr[-3000:]
  assert final_params(str(killed))[0] == 2  # Killed after step 3: step 2 checkpointed.
  result = _launch(tmp_path, killed, arg)  # Same workdir: resumes from step 2.
  assert result.returncode == 0, result.stderr[-3000:]
  step, params = final_params(str(killed))
  assert step == 6
  return result, params


def test_imagenet_streams_through_launch_and_resumes_exactly_with_workers(tmp_path):
  expected = _straight_run(tmp_path)
  result, params = _kill_and_resume(tmp_path, "workers")
  assert "streamed, 2 worker process(es)" in result.stderr
  # Bit for bit: 2 worker processes and a kill change nothing.
  jax.tree.map(np.testing.assert_array_equal, expected, params)


@pytest.mark.slow  # The same without workers (~2 min on loaded cores).
def test_imagenet_streamed_in_process_resumes_exactly(tmp_path):
  expected = _straight_run(tmp_path)
  _, params = _kill_and_resume(tmp_path, "")
  jax.tree.map(np.testing.assert_array_equal, expected, params)


def test_two_processes_each_read_only_their_rows_and_train_what_one_does(tmp_path):
  """Two launch.py processes joined by jax.distributed, streaming mock ImageNet."""
  address = f"127.0.0.1:{free_port()}"
  two = tmp_path / "two"
  processes = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "tests", "mock_launch.py"),
       "--config=tests/streaming_experiment.py", f"--workdir={two}", "--distributed",
       f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env={**os.environ, "MOCK_EXAMPLES": str(MOCK_EXAMPLES),
           "MOCK_LOG_READS": str(tmp_path / f"reads_{i}.txt")})
      for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for p, out in zip(processes, outputs):
    assert p.returncode == 0, out[-3000:]

  # Every training read of process i is exactly its half of some step's sorted
  # global batch, and never a record of the other half.
  config = streaming_experiment.get_config()
  batches = pipeline.index_batches(MOCK_EXAMPLES, config.batch_size, config.seed)
  half = config.batch_size // 2
  for i in range(2):
    reads = [np.array(line.split(), int)
             for line in (tmp_path / f"reads_{i}.txt").read_text().splitlines()]
    assert len(reads) >= config.total_steps
    for idx in reads:
      assert any(np.array_equal(idx, np.sort(batches[s])[i * half:(i + 1) * half])
                 for s in range(config.total_steps + 4)), idx

  step_two, params_two = final_params(str(two))
  assert step_two == config.total_steps
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               _straight_run(tmp_path), params_two)
