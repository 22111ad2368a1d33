"""Predictor's promises on its inputs (#16): what the model cannot take is a
``PredictorInputError`` (an ``MVLTError``) saying what it expects, checked before anything is
computed; uint8 images are scaled as training scales them; one string is one caption.

One compile in all (the tiny model, one image of 64x64, L=16); every refusal happens before it.
Photos (#18): files, bytes, PIL images and uint8 arrays of any size get the training
preprocessing (white-margin crop, resize to the checkpoint's 64x64) before that same compile.
"""

import re

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from input_pipeline import image_ops
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
    # (64, 64, 3) uint8 is one photo since #18 (test_photos_...); a float one is still refused.
    'shape',
    [(1, 48, 48, 3), (1, 16, 16, 3), (1, 40, 64, 3), (1, 64, 64), (1, 64, 64, 4)],
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


# --- photos get the training preprocessing (#18) -------------------------------------------------

PHOTO_BOX = (40, 60, 200, 230)  # left, top, right, bottom of the product in a 256x256 photo


def product_photo():
  """A 256x256 product photo: a shaded red object in PHOTO_BOX on white."""
  image = np.full((256, 256, 3), 255, np.uint8)
  left, top, right, bottom = PHOTO_BOX
  shade = np.linspace(0.7, 1.0, right - left)[None, :, None]
  image[top:bottom, left:right] = (np.array([200, 30, 30]) * shade).astype(np.uint8)
  return image


def test_a_256_px_photo_is_cropped_and_resized_for_the_64_px_model(predictor, tmp_path):
  photo = product_photo()
  path = tmp_path / 'photo.png'
  Image.fromarray(photo).save(path)
  # What prepare stores for that photo at image_size=64: the object cropped, then resized.
  left, top, right, bottom = PHOTO_BOX
  cropped = Image.fromarray(photo[top:bottom, left:right]).resize(
      (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR
  )
  expected = np.asarray(cropped)[None]  # uint8 [1, 64, 64, 3]
  np.testing.assert_array_equal(image_ops.preprocess_image(photo, IMAGE_SIZE)[None], expected)
  for form in (str(path), path, path.read_bytes(), Image.fromarray(photo), photo, [photo]):
    np.testing.assert_array_equal(predictor.load_images(form), expected, err_msg=type(form))
  np.testing.assert_array_equal(
      predictor.prepare_images(str(path)), predictor.prepare_images(expected)
  )
  # The model gets what it was trained on: the same outputs as the preprocessed batch.
  from_photo = predictor.forward(str(path), ids(1, 5, 9))
  from_batch = predictor.forward(expected, ids(1, 5, 9))
  for key in ('itm_logits', 'mlm_logits'):
    np.testing.assert_array_equal(from_photo[key], from_batch[key], err_msg=key)
  np.testing.assert_array_equal(
      predictor.itm_scores([str(path)], 'red shirt'), predictor.itm_scores(expected, 'red shirt')
  )
  # A list mixes kinds and sizes; grayscale and RGBA arrays are photos too.
  gray = np.full((30, 50), 90, np.uint8)
  assert predictor.load_images([str(path), gray, photo[..., :2].repeat(2, -1)]).shape == (
      3,
      IMAGE_SIZE,
      IMAGE_SIZE,
      3,
  )
  # The same 256 px photo as a 4-D batch is taken as it is, but not silently.
  with pytest.warns(UserWarning, match='trained at 64x64 as they are'):
    assert predictor.prepare_images(photo[None]).shape == (1, 256, 256, 3)


def test_a_pil_photo_is_turned_upright_as_a_file_is(predictor, tmp_path):
  photo = Image.fromarray(product_photo()[:, 20:])  # 236 wide, 256 high
  exif = Image.Exif()
  exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
  path = tmp_path / 'rotated.jpg'
  photo.save(path, exif=exif, quality=95)
  from_file = predictor.load_images(str(path))
  np.testing.assert_array_equal(predictor.load_images(Image.open(path)), from_file)
  upright = predictor.load_images(np.asarray(Image.open(path).rotate(-90, expand=True)))
  assert np.abs(from_file.astype(int) - upright.astype(int)).mean() < 1.0  # JPEG decode only


def test_photos_that_cannot_be_read_are_refused(predictor, tmp_path):
  not_an_image = tmp_path / 'photo.jpg'
  not_an_image.write_text('hello')
  with raises_input_error(re.escape(f'{tmp_path / "nowhere.jpg"}: no such image file.')):
    predictor.itm_scores(str(tmp_path / 'nowhere.jpg'), 'red shirt')
  with raises_input_error(re.escape(f'{not_an_image}: cannot decode image: not an image')):
    predictor.forward([str(not_an_image)], ids(1))
  with raises_input_error(r'image 1 of the list is an array of shape \(1, 64, 64, 3\)'):
    predictor.load_images([product_photo(), np.zeros((1, 64, 64, 3), np.uint8)])
  with raises_input_error('image 0 of the list is a float'):
    predictor.load_images([0.5, str(not_an_image)])
  # Photos are uint8: a float [H, W, 3] image is refused as before.
  with raises_input_error(r'images must be \[N, H, W, 3\].*got shape \(64, 64, 3\)'):
    predictor.forward(np.zeros((64, 64, 3), np.float32), ids(1))


def test_one_uint8_array_of_any_size_is_one_photo(predictor, image_uint8):
  np.testing.assert_array_equal(
      predictor.load_images(image_uint8[0]), image_ops.preprocess_image(image_uint8[0], 64)[None]
  )
  white = np.full((64, 64, 3), 255, np.uint8)  # all white: nothing to crop, kept whole
  np.testing.assert_array_equal(predictor.prepare_images(white), np.ones((1, 64, 64, 3)))
