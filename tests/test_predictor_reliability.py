"""Predictor's promises on its inputs (#16): what the model cannot take is a
``PredictorInputError`` (an ``MVLTError``) saying what it expects, checked before anything is
computed; uint8 images are scaled as training scales them; one string is one caption.

One compile in all (the tiny model, one image of 64x64, L=16); every refusal happens before it.
"""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from mvlt_jax import steps
from mvlt_jax.errors import ConfigError, MVLTError
from mvlt_jax.inference import Predictor, PredictorInputError
from mvlt_jax.models import build_model
from tests import conftest

IMAGE_SIZE = 64
TEXT_LENGTH = 16
VOCAB = 64  # conftest.tiny_config's model.vocab_size


class CharTokenizer:
  """A stand-in tokenizer (no TensorFlow, no files): [CLS]=1, a character -> 3 + code % 60."""

  def encode(self, text, length):
    ids = [1] + [3 + ord(ch) % 60 for ch in text][: length - 1]
    return np.array(ids + [0] * (length - len(ids)), np.int32)


@pytest.fixture(scope='module')
def predictor():
  config = conftest.tiny_config(heads=('mlm', 'itm', 'mir'))
  assert config.model.vocab_size == VOCAB and config.model.image_size == IMAGE_SIZE
  variables = conftest.random_variables(build_model(config.model), IMAGE_SIZE, TEXT_LENGTH)
  return Predictor(config, variables, tokenizer=CharTokenizer())


@pytest.fixture(scope='module')
def image_uint8():
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)


def ids(*values):
  row = np.ones((1, TEXT_LENGTH), np.int64)
  row[0, : len(values)] = values
  return row


def raises_input_error(match):
  return pytest.raises(PredictorInputError, match=match)


# --- f. token ids outside the vocabulary ------------------------------------------------------


@pytest.mark.parametrize(
    'bad, message',
    [
        ((1, 64, 100), 'input_ids hold 2 ids outside the vocabulary, from 64 to 100'),
        ((-1, 5), 'input_ids hold 1 ids outside the vocabulary, from -1 to -1'),
    ],
)
def test_ids_outside_the_vocabulary_are_refused(predictor, image_uint8, bad, message):
  with raises_input_error(message) as error:
    predictor.forward(image_uint8, ids(*bad))
  assert f'ids must be in [0, {VOCAB}) (model.vocab_size={VOCAB})' in str(error.value)
  assert isinstance(error.value, MVLTError)
  with raises_input_error('outside the vocabulary'):
    predictor.itm_scores(image_uint8, ids(*bad))


def test_token_id_shapes_and_dtypes_are_checked(predictor, image_uint8):
  with raises_input_error(r'input_ids must be integer token ids; got dtype float32'):
    predictor.forward(image_uint8, ids(1, 2).astype(np.float32))
  with raises_input_error(r'\[N, L\] with N=1 \(one row per image\) and 1 <= L <= 16'):
    predictor.forward(image_uint8, np.ones((2, TEXT_LENGTH), np.int32))
  with raises_input_error(r'1 <= L <= 16 \(model.text_length\); got shape \(1, 17\)'):
    predictor.forward(image_uint8, np.ones((1, TEXT_LENGTH + 1), np.int32))


# --- g. image shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    'shape',
    [(1, 48, 48, 3), (1, 16, 16, 3), (1, 40, 64, 3), (1, 64, 64), (1, 64, 64, 4), (64, 64, 3)],
)
def test_image_shapes_the_model_cannot_take_are_refused(predictor, shape):
  images = np.zeros(shape, np.uint8)
  with raises_input_error(
      re.escape(
          'images must be [N, H, W, 3] with H and W multiples of 32; this checkpoint was '
          f'trained at [N, 64, 64, 3]; got shape {shape}.'
      )
  ):
    predictor.forward(images, ids(1))


# --- h. uint8 images are scaled as in training, floats taken as they are in [0, 1] ------------


def test_uint8_images_are_scaled_as_training_does(predictor, image_uint8):
  as_training = np.asarray(steps.images_to_float(jnp.asarray(image_uint8)))  # [0, 1]
  as_float = predictor.prepare_images(image_uint8)
  np.testing.assert_array_equal(as_float, as_training)
  assert as_float.dtype == np.float32 and as_float.max() <= 1.0
  from_uint8 = predictor.forward(image_uint8, ids(1, 5, 9))
  from_float = predictor.forward(as_training, ids(1, 5, 9))  # floats are taken as they are
  for key in ('itm_logits', 'mlm_logits', 'reconstruction'):
    np.testing.assert_array_equal(from_uint8[key], from_float[key], err_msg=key)
    assert np.isfinite(from_uint8[key]).all(), key


def test_floats_outside_zero_one_and_other_dtypes_are_refused(predictor, image_uint8):
  with raises_input_error(r'float images must be in \[0, 1\]; got values from 0 to 255 \(pass'):
    predictor.forward(image_uint8.astype(np.float32), ids(1))
  normalised = (image_uint8 / 255.0 - 0.45) / 0.225  # mean/std-normalised
  with raises_input_error('float images must be in'):
    predictor.forward(normalised, ids(1))
  with raises_input_error('images hold 1 NaN or Inf values'):
    nan = image_uint8 / 255.0
    nan[0, 0, 0, 0] = np.nan
    predictor.forward(nan, ids(1))
  with raises_input_error(r'got dtype int32 \(cast \[0, 255\] integers to uint8\)'):
    predictor.forward(image_uint8.astype(np.int32), ids(1))
  # Resampling overshoot within FLOAT_IMAGE_TOLERANCE passes as it is.
  overshoot = (image_uint8 / 255.0 * 1.08 - 0.04).astype(np.float32)
  np.testing.assert_array_equal(predictor.prepare_images(overshoot), overshoot)


# --- i. a single string is one caption ---------------------------------------------------------


def test_a_single_string_is_one_caption(predictor, image_uint8):
  caption = 'red striped long-sleeve t-shirt'
  np.testing.assert_array_equal(predictor.encode(caption), predictor.encode([caption]))
  assert predictor.encode(caption).shape == (1, TEXT_LENGTH)
  one = predictor.itm_scores(image_uint8, caption)
  assert one.shape == (1,) and 0 < one[0] < 1
  np.testing.assert_array_equal(one, predictor.itm_scores(image_uint8, [caption]))
  two_images = np.concatenate([image_uint8, image_uint8])
  with raises_input_error(r'1 caption\(s\) for 2 image\(s\).*\[caption\] \* N'):
    predictor.itm_scores(two_images, caption)
  with raises_input_error('captions must be strings'):
    predictor.itm_scores(two_images, [caption, 3])
  no_tokenizer = Predictor(predictor.config, predictor.variables)
  with raises_input_error('no tokenizer'):
    no_tokenizer.itm_scores(image_uint8, caption)
  recognition_only = conftest.tiny_config(heads=('recognition',))
  with pytest.raises(ConfigError, match='itm_scores needs the ITM head'):
    Predictor(recognition_only, predictor.variables).itm_scores(image_uint8, caption)
