"""The scripts behind docs/ figures stay runnable: docs/experiments/itm_binding_toy.py,
docs/experiments/dtype_audit.py."""

import importlib.util
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str):
  path = os.path.join(REPO, 'docs', 'experiments', f'{name}.py')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_dtype_audit_finds_the_casts_per_example():
  from tests.conftest import tiny_config

  audit = _load('dtype_audit')
  config = tiny_config()
  config.model.dtype = 'bfloat16'
  config.model.word_embedding_grad = 'one_hot'
  casts = audit.casts_per_example(config)
  by_place = {}
  for site, elements in casts.items():
    by_place.setdefault((site.source_dtype, site.target_dtype, site.where.split(' <- ')[-1]), 0)
    by_place[site.source_dtype, site.target_dtype, site.where.split(' <- ')[-1]] += elements
  # The word table (64 x 32) is cast to bf16 once per step whatever the batch: 0 per example.
  table_casts = [s for s in casts if 'TextEmbeddings' in s.where and s.source_dtype == 'float32']
  assert any(casts[s] == 0 for s in table_casts)
  # The one-hot matrix of the word gradient: 16 positions x 64 words per example, in bf16.
  assert (
      casts[next(s for s in casts if s.source_dtype == 'bool' and 'TextEmbeddings' in s.where)]
      == 16 * 64
  )
  # LayerNorm statistics in float32: flax's _normalize casts up and back down, per example.
  assert by_place['bfloat16', 'float32', 'normalization.py:_normalize'] > 0
  assert by_place['float32', 'bfloat16', 'normalization.py:_normalize'] > 0


@pytest.fixture(scope='module')
def toy():
  """The script as a module, loaded once (it defines absl flags)."""
  path = os.path.join(REPO, 'docs', 'experiments', 'itm_binding_toy.py')
  spec = importlib.util.spec_from_file_location('itm_binding_toy', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('supervise', ['none', 'image', 'text', 'both'])
def test_toy_batches_pair_colours_as_labelled(toy, supervise):
  config = toy.toy_config(supervise)
  assert ('recognition' in config.model.heads) == (supervise != 'none')
  colours = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
  batch = toy.make_batch(np.random.default_rng(0), colours, config.model.text_length, supervise)
  centre = toy.IMAGE_SIZE // 2
  image_colour = np.array(
      [
          np.flatnonzero((colours == pixel).all(axis=1))[0]
          for pixel in batch['images'][:, centre, centre]
      ]
  )
  text_colour = batch['input_ids'][:, 1] - toy.FIRST_COLOUR_ID
  np.testing.assert_array_equal(batch['itm_labels'], (image_colour == text_colour).astype(int))
  assert 0 < batch['itm_labels'].mean() < 1
  assert (batch['images'][:, 0, 0] == 255).all()  # white background
  expected_main = text_colour if supervise in ('text', 'both') else image_colour
  expected_sub = text_colour if supervise == 'text' else image_colour
  np.testing.assert_array_equal(batch['main_labels'], expected_main)
  np.testing.assert_array_equal(batch['sub_labels'], expected_sub)
