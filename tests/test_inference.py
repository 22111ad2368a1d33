"""Predictor (mvlt_jax.inference): float32 compute by default, whatever the checkpoint's dtype.

Three compiles in all (the float32 Predictor, a float32 reference, a bfloat16 Predictor);
the other checks only build models.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mvlt_jax import checkpoint
from mvlt_jax.errors import ConfigError, MVLTError
from mvlt_jax.inference import Predictor, resolve_dtype
from mvlt_jax.models import build_model
from tests import conftest
from tests.conftest import tiny_config

IMAGE_SIZE = 64
TEXT_LENGTH = 16


def bf16_config():
  """The tiny model trained in bfloat16 (as configs/pretrain.py trains)."""
  config = tiny_config(heads=('mlm', 'itm'))
  config.model.dtype = 'bfloat16'
  return config


def random_variables(model, seed=0):
  return conftest.random_variables(model, IMAGE_SIZE, TEXT_LENGTH, seed)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  config = bf16_config()
  variables = random_variables(build_model(config.model))
  directory = str(tmp_path_factory.mktemp('inference') / 'checkpoint')
  checkpoint.save_variables(directory, variables, config)
  rng = np.random.default_rng(1)
  images = rng.uniform(size=(2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)  # [B, H, W, 3]
  input_ids = rng.integers(1, config.model.vocab_size, (2, TEXT_LENGTH)).astype(np.int32)
  return dict(
      config=config, variables=variables, checkpoint=directory, images=images, input_ids=input_ids
  )


def test_float32_by_default_over_a_bfloat16_checkpoint(setup):
  predictor = Predictor.from_checkpoint(setup['checkpoint'])
  assert predictor.config.model.dtype == 'bfloat16'  # the checkpoint's, as stored
  assert predictor.dtype == 'float32' and predictor.model.dtype == jnp.float32
  outputs = predictor.forward(setup['images'], setup['input_ids'])
  # The same variables through a model built for float32 compute give the same numbers.
  float32_config = setup['config'].copy_and_resolve_references()
  float32_config.model.dtype = 'float32'
  reference = jax.jit(functools.partial(build_model(float32_config.model).apply, train=False))
  expected = reference(
      setup['variables'], jnp.asarray(setup['images']), jnp.asarray(setup['input_ids'])
  )
  assert set(outputs) == set(expected)
  for key in ('mlm_logits', 'itm_logits'):
    assert outputs[key].dtype == np.float32
    np.testing.assert_array_equal(outputs[key], np.asarray(expected[key]), err_msg=key)
  # Parameters stay as stored.
  for stored, used in zip(
      jax.tree.leaves(setup['variables']), jax.tree.leaves(predictor.variables)
  ):
    assert used.dtype == stored.dtype == np.float32
    np.testing.assert_array_equal(used, stored)
  setup['float32_outputs'] = outputs


def test_bfloat16_on_request(setup):
  predictor = Predictor(setup['config'], setup['variables'], dtype='bfloat16')
  assert predictor.dtype == 'bfloat16' and predictor.model.dtype == jnp.bfloat16
  assert predictor.variables is setup['variables']
  outputs = predictor.forward(setup['images'], setup['input_ids'])
  float32 = setup.get('float32_outputs') or Predictor(setup['config'], setup['variables']).forward(
      setup['images'], setup['input_ids']
  )
  difference = np.abs(np.asarray(outputs['mlm_logits'], np.float32) - float32['mlm_logits'])
  assert difference.max() > 0  # bfloat16 compute rounds
  np.testing.assert_allclose(
      np.asarray(outputs['mlm_logits'], np.float32), float32['mlm_logits'], atol=0.1
  )


def test_dtype_choices(setup):
  config, variables = setup['config'], setup['variables']
  assert Predictor(config, variables, dtype='').model.dtype == jnp.bfloat16  # the checkpoint's
  assert Predictor(config, variables, dtype='float16').model.dtype == jnp.float16
  assert Predictor(config, variables, dtype=jnp.bfloat16).dtype == 'bfloat16'
  assert Predictor(config, variables).model.dtype == jnp.float32
  checkpoint_dtype = Predictor.from_checkpoint(setup['checkpoint'], dtype='')
  assert checkpoint_dtype.dtype == 'bfloat16'
  assert resolve_dtype(None, config.model) == 'bfloat16'


@pytest.mark.parametrize('dtype', ['float64', 'fp32', 'int8', np.int32])
def test_bad_dtype_is_a_clear_error(setup, dtype):
  with pytest.raises(ConfigError, match='float32'):
    Predictor(setup['config'], setup['variables'], dtype=dtype)
  # Refused before the checkpoint is read (the path does not exist).
  with pytest.raises(MVLTError, match='dtype'):
    Predictor.from_checkpoint('/nonexistent/checkpoint', dtype=dtype)


def test_bad_checkpoint_dtype_is_a_clear_error(setup):
  config = setup['config'].copy_and_resolve_references()
  config.model.dtype = 'float8'
  with pytest.raises(ConfigError, match="checkpoint's model.dtype"):
    Predictor(config, setup['variables'], dtype='')
