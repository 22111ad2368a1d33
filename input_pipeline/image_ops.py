"""Product photos -> RGB uint8 [S, S, 3]: decode, white-margin crop, resize.

The release's preprocessing, reproduced here:

1. the image is binarised to 1 bit the way PIL's ``convert('1')`` does it on
   the grayscale image (Floyd-Steinberg dithering: a pixel ends up black in
   proportion to how dark the area around it is, so any non-white content
   leaves black pixels while pure white leaves none);
2. it is cropped to the bounding box of the black pixels (an all-white image
   is kept whole);
3. it is resized to S x S with PIL's bilinear filter, aspect not kept.

Before that, any input becomes RGB on a white background: EXIF orientation is
applied, transparency (RGBA, LA, palette or colour-key transparency) is
composited on white, 16-bit grayscale is scaled to 8 bits, CMYK/palette/
grayscale/bilevel are converted to RGB.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from input_pipeline.errors import ImageDecodeError

WHITE = (255, 255, 255)
# Grayscale modes holding more than 8 bits per pixel (16-bit PNG, 32-bit int).
_HIGH_BIT_DEPTH_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')
_MAX_16_BIT = 65535


def decode_image(data: bytes) -> Image.Image:
  """Decodes encoded image bytes completely and applies the EXIF orientation.

  Raises:
    ImageDecodeError: the bytes are not a complete image PIL can decode.
  """
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # Decode now: truncation shows up here, not later.
    return ImageOps.exif_transpose(image)
  except Exception as e:  # PIL raises many kinds (OSError, SyntaxError, ...).
    raise ImageDecodeError(f'cannot decode image: {type(e).__name__}: {e}') from e


def to_rgb_on_white(image: Image.Image) -> Image.Image:
  """Any PIL image as mode RGB, transparent parts composited on white."""
  if image.mode in _HIGH_BIT_DEPTH_MODES:
    values = np.asarray(image, dtype=np.float64)
    scaled = np.clip(np.round(values * 255.0 / _MAX_16_BIT), 0, 255).astype(np.uint8)
    image = Image.fromarray(scaled)  # mode L
  elif image.mode == 'F':
    image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
  has_alpha = 'A' in image.getbands() or 'transparency' in image.info
  if has_alpha:
    rgba = image.convert('RGBA')
    background = Image.new('RGBA', rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert('RGB')
  if image.mode != 'RGB':
    return image.convert('RGB')
  return image


def white_margin_box(image: Image.Image) -> tuple[int, int, int, int] | None:
  """Box ``(left, top, right, bottom)`` of the dark pixels of ``image``.

  Dark pixels are the black ones of PIL's 1-bit conversion of the grayscale
  image (with its default dithering). ``None`` if there are none.
  """
  white = np.asarray(image.convert('L').convert('1'))  # [H, W] bool, True = white
  dark_rows = np.flatnonzero(~white.all(axis=1))
  if dark_rows.size == 0:
    return None
  dark_cols = np.flatnonzero(~white.all(axis=0))
  return (int(dark_cols[0]), int(dark_rows[0]), int(dark_cols[-1]) + 1, int(dark_rows[-1]) + 1)


def crop_white_margin(image: Image.Image) -> Image.Image:
  """``image`` cropped to :func:`white_margin_box` (whole if all white)."""
  box = white_margin_box(image)
  if box is None or box == (0, 0) + image.size:
    return image
  return image.crop(box)


def preprocess_image(
    image: Image.Image | np.ndarray, size: int, crop_margin: bool = True
) -> np.ndarray:
  """The model's input image: RGB uint8 ``[size, size, 3]``.

  Args:
    image: a PIL image of any mode, or a uint8 ``[H, W, 3]`` / ``[H, W]`` array.
    size: output height and width.
    crop_margin: crop to the bounding box of the non-white content first.
  """
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  rgb = to_rgb_on_white(image)
  if crop_margin:
    rgb = crop_white_margin(rgb)
  if rgb.size != (size, size):
    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(rgb, dtype=np.uint8)  # [size, size, 3]


def decode_and_preprocess(data: bytes, size: int, crop_margin: bool = True) -> np.ndarray:
  """:func:`decode_image` then :func:`preprocess_image`; uint8 ``[size, size, 3]``."""
  image = decode_image(data)
  try:
    return preprocess_image(image, size, crop_margin)
  except (OSError, ValueError) as e:  # A decodable image of an unsupported mode.
    raise ImageDecodeError(f'cannot convert image of mode {image.mode} to RGB: {e}') from e


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
  """JPEG bytes of a uint8 ``[H, W, 3]`` array (for the ``jpeg`` storage)."""
  out = io.BytesIO()
  Image.fromarray(image).save(out, format='JPEG', quality=quality)
  return out.getvalue()


@dataclasses.dataclass(frozen=True)
class StorageSpec:
  """How images are stored in a prepared dataset.

  Attributes:
    size: height and width S.
    crop_margin: crop to the non-white content before resizing.
    encoding: ``raw`` (uint8 [S, S, 3]) or ``jpeg`` (JPEG bytes).
    jpeg_quality: quality of the ``jpeg`` encoding.
  """

  size: int
  crop_margin: bool = True
  encoding: str = 'raw'
  jpeg_quality: int = 95


# What a source hands over for one image: encoded bytes, pixels, or a
# (picklable) function that draws the pixels.
SourceImage = Union[bytes, np.ndarray, Image.Image, Callable[[], np.ndarray]]


def to_stored_image(image: SourceImage, spec: StorageSpec) -> np.ndarray | bytes:
  """The image as stored: uint8 [S, S, 3] (``raw``) or JPEG bytes (``jpeg``).

  Raises:
    ImageDecodeError: ``image`` is bytes that cannot be decoded.
  """
  if callable(image):
    image = image()
  if isinstance(image, bytes):
    pixels = decode_and_preprocess(image, spec.size, spec.crop_margin)
  else:
    pixels = preprocess_image(image, spec.size, spec.crop_margin)
  if spec.encoding == 'jpeg':
    return encode_jpeg(pixels, spec.jpeg_quality)
  return pixels


def to_stored_images(
    images: Sequence[SourceImage], spec: StorageSpec
) -> list[np.ndarray | bytes | ImageDecodeError]:
  """:func:`to_stored_image` of each image; an undecodable one gives its error."""
  out = []
  for image in images:
    try:
      out.append(to_stored_image(image, spec))
    except ImageDecodeError as e:
      out.append(e)
  return out
