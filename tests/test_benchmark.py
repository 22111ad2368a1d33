"""The training-throughput benchmark: the command's JSON line, synthetic batches, FLOP count."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import pretrain
from mvlt_jax import benchmark
from mvlt_jax.errors import ConfigError
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_DEVICES = 2
TINY_FLAGS = (
    '--config.model.variant=pvlt_micro',
    '--config.model.image_size=64',
    '--config.model.text_length=16',
    '--config.model.vocab_size=64',
    '--config.model.pos_grid_size=64',
    '--config.model.text_width=32',
    '--config.model.head_width=32',
    '--config.model.mir_channels=8',
    '--config.model.dtype=float32',
    '--config.masking.image_unit=8',
    '--config.masking.mlm_max_predictions=4',
    '--config.global_batch_size=4',
    '--steps=3',
    '--warmup=1',
)
# PERFORMANCE.md: pvlt_tiny at 256x256, L=128, forward + backward with full MLM logits.
RELEASE_GFLOP_PER_EXAMPLE = 50.35


@pytest.fixture(scope='module')
def result(tmp_path_factory):
  """One benchmark run over 2 fake CPU devices, with TensorFlow made unimportable."""
  blocker = tmp_path_factory.mktemp('no_tensorflow') / 'tensorflow'
  blocker.mkdir()
  (blocker / '__init__.py').write_text(
      "raise ImportError('the benchmark must not import TensorFlow')\n"
  )
  env = dict(os.environ)
  env.update(
      {
          'XLA_FLAGS': (
              f'--xla_force_host_platform_device_count={FAKE_DEVICES} '
              '--xla_backend_optimization_level=0'
          ),
          'JAX_PLATFORMS': 'cpu',
          'PYTHONPATH': os.pathsep.join([str(blocker.parent), REPO]),
      }
  )
  command = [
      sys.executable,
      '-m',
      'mvlt_jax.benchmark',
      '--config=configs/pretrain.py',
      *TINY_FLAGS,
  ]
  completed = subprocess.run(
      command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  lines = completed.stdout.strip().splitlines()
  assert len(lines) == 1, completed.stdout
  return json.loads(lines[0])


def test_prints_every_field(result):
  assert set(benchmark.RESULT_KEYS) <= set(result)
  assert result['model'] == 'pvlt_micro'
  assert (result['image_size'], result['text_length']) == (64, 16)
  assert result['global_batch_size'] == 4
  assert result['devices'] == FAKE_DEVICES
  assert result['mesh'] == {'data': FAKE_DEVICES, 'fsdp': 1}
  assert result['device_kind'] == 'cpu'
  assert result['dtype'] == 'float32'
  assert result['steps'] == 3 and result['warmup'] == 1


def test_times_and_throughput_are_consistent(result):
  assert 0 < result['step_time_min_s'] <= result['step_time_s'] <= result['step_time_max_s']
  assert result['examples_per_s'] == pytest.approx(4 / result['step_time_s'])
  assert result['loop_examples_per_s'] == pytest.approx(4 / result['loop_step_time_s'])
  assert result['compile_time_s'] > 0
  assert math.isfinite(result['final_loss'])


def test_flops_and_unknown_peaks_on_cpu(result):
  assert result['flops_per_example'] > 0
  # 4 MLM predictions of 16 positions cost less than the full-logits step.
  assert 0 < result['executed_flops_per_example'] < result['flops_per_example']
  assert result['mfu'] is None  # no peak rate for a CPU
  assert result['peak_memory_gib'] is None  # the CPU reports no memory statistics


def test_synthetic_batch_looks_like_captions():
  ids = benchmark.BERT_IDS
  batch = jax.jit(
      lambda rng: benchmark.synthetic_batch(
          rng,
          batch_size=8,
          image_size=16,
          text_length=32,
          vocab_size=30522,
          ids=ids,
          caption_tokens=(5, 12),
          num_main_classes=3,
          num_sub_classes=4,
      )
  )(jax.random.key(0))
  batch = jax.tree.map(np.asarray, batch)
  assert batch['images'].shape == (8, 16, 16, 3) and batch['images'].dtype == np.uint8
  assert batch['input_ids'].shape == (8, 32) and batch['input_ids'].dtype == np.int32
  assert set(np.unique(batch['itm_labels'])) <= {0, 1}
  assert batch['main_labels'].max() < 3 and batch['sub_labels'].max() < 4
  for row in batch['input_ids']:
    sep = int(np.flatnonzero(row == ids.sep)[0])
    assert row[0] == ids.cls
    assert 5 <= sep - 1 <= 12  # real words between [CLS] and [SEP]
    assert np.all(row[1:sep] > ids.mask) and np.all(row[1:sep] < 30522)
    assert np.all(row[sep + 1 :] == ids.pad)


def test_caption_ids_follow_the_vocabulary():
  assert benchmark.caption_ids_for(30522) == benchmark.BERT_IDS
  assert benchmark.caption_ids_for(64) == benchmark.COMPACT_IDS
  assert benchmark.COMPACT_IDS.token_spec(64) == (64, (0, 1, 2, 3, 4), 4)
  with pytest.raises(ConfigError, match='vocab_size=5'):
    benchmark.caption_ids_for(5)


def test_peak_rates_by_device_kind():
  assert benchmark.peak_tflops_for('NVIDIA H100 80GB HBM3') == pytest.approx(989.4)
  assert benchmark.peak_tflops_for('NVIDIA H100 PCIe') == 756.0
  assert benchmark.peak_tflops_for('TPU v5 lite') == 197.0
  assert benchmark.peak_tflops_for('TPU v5') == 459.0
  assert benchmark.peak_tflops_for('cpu') is None


def test_a_mesh_the_devices_cannot_fill_fails_clearly():
  config = tiny_config()
  config.mesh.data = jax.device_count() + 1
  with pytest.raises(ConfigError, match='devices'):
    benchmark.run_benchmark(config, num_steps=1, warmup=0, count_flops=False)


def test_attribute_heads_without_class_counts_fail_clearly():
  config = tiny_config(heads=('itm', 'attributes'))
  with pytest.raises(ConfigError, match='attribute_classes'):
    benchmark.run_benchmark(config, num_steps=1, warmup=0, count_flops=False)


def test_synthetic_batch_has_attribute_labels_in_range():
  batch = benchmark.synthetic_batch(
      jax.random.key(0),
      batch_size=64,
      image_size=8,
      text_length=8,
      vocab_size=64,
      ids=benchmark.caption_ids_for(64),
      caption_tokens=(2, 4),
      attribute_classes=(16, 3),
  )
  for side in ('caption', 'image'):
    labels = np.asarray(batch[f'{side}_attribute_labels'])
    assert labels.shape == (64, 2)
    assert labels.min() >= 0 and labels[:, 0].max() < 16 and labels[:, 1].max() < 3
    assert labels[:, 1].max() == 2  # the range is used, per attribute


@pytest.mark.parametrize(
    'options, message',
    [
        (dict(num_steps=0, warmup=0), '--steps'),
        (dict(num_steps=1, warmup=-1), '--warmup'),
        (dict(num_steps=1, warmup=0, caption_tokens=(9, 3)), 'caption lengths'),
    ],
)
def test_bad_options_fail_clearly(options, message):
  with pytest.raises(ConfigError, match=message):
    benchmark.run_benchmark(tiny_config(), count_flops=False, **options)


def test_flops_of_pvlt_tiny_match_the_release_count():
  """XLA's count of the full-logits step (lowered, never compiled) vs PyTorch's 50.35 GFLOP."""
  config = pretrain.get_config()
  token_spec = benchmark.BERT_IDS.token_spec(config.model.vocab_size)
  gflop = benchmark.flops_per_example(config, token_spec, full_logits=True) / 1e9
  assert gflop == pytest.approx(RELEASE_GFLOP_PER_EXAMPLE, rel=0.05)
