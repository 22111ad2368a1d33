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
composited on white, 16-bit grayscale is scaled to 8 bits (integer arithmetic, a
block of rows at a time: no float copy of the image), CMYK/palette/
grayscale/bilevel are converted to RGB.

What is decoded (hostile input included):

* only the raster formats of :data:`ACCEPTED_FORMATS` (``Image.open(...,
  formats=...)``): Pillow's other plugins (EPS, which runs Ghostscript, PSD, ICO,
  PPM, ...) never see the bytes; an image of another format raises
  :class:`UnsupportedImageFormatError` naming its format;
* only an image of at most ``max_pixels`` pixels: the size is read from the
  header (``Image.open`` is lazy) and a larger image raises
  :class:`ImageTooLargeError` before any pixel is decoded (Pillow's own
  decompression-bomb limit is set to the same number while it is decoded, for the sizes
  Pillow meets only then: GIF frames, TIFF tiles).
  The file size limit (``max_image_bytes``) is checked by the source before the
  file is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from input_pipeline.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageFormatError

WHITE = (255, 255, 255)
# The image formats decoded (Pillow's format names), the raster formats product photos come
# in. JPEG includes MPO (multi-picture JPEG from cameras, opened by the JPEG plugin). Any
# other format Pillow knows (EPS, PDF, PSD, ICO, PPM, TGA, JPEG 2000, AVIF, ...) is refused.
ACCEPTED_FORMATS = ('JPEG', 'PNG', 'WEBP', 'GIF', 'BMP', 'TIFF')
# Default limits (PrepareOptions.max_image_pixels / max_image_bytes): far above any product
# photo (a 50-megapixel camera, a 64 MiB file), far below what exhausts a worker's memory.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
DEFAULT_MAX_IMAGE_BYTES = 64 * 2**20
# Grayscale modes holding more than 8 bits per pixel (16-bit PNG, 32-bit int).
_HIGH_BIT_DEPTH_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N')
_MAX_16_BIT = 65535
# Pixels converted at once from 16 to 8 bits (bounds the temporary arrays).
_CONVERT_BLOCK_PIXELS = 1 << 16


def _sniffed_format(data: bytes) -> str | None:
  """The Pillow format whose signature ``data`` starts with (no plugin code is run on the
  data beyond its ``_accept`` check of the first bytes), or None."""
  Image.init()
  prefix = data[:16]
  for name, (_, accept) in Image.OPEN.items():
    try:
      if accept is not None and accept(prefix):
        return name
    except Exception:  # pylint: disable=broad-except  # A plugin's check of odd bytes.
      continue
  return None


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
  """Pillow's decompression-bomb limit set to ``max_pixels`` (None: off), its warning made an
  error: what Pillow checks while decoding (GIF frames, TIFF tiles, ...) is held to it too."""
  saved = Image.MAX_IMAGE_PIXELS
  Image.MAX_IMAGE_PIXELS = max_pixels
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      yield
  finally:
    Image.MAX_IMAGE_PIXELS = saved


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
  """Decodes encoded image bytes completely and applies the EXIF orientation.

  Only :data:`ACCEPTED_FORMATS` are decoded, and only images of at most ``max_pixels``
  pixels (checked from the header, before decoding).

  Raises:
    ImageTooLargeError: more than ``max_pixels`` pixels.
    UnsupportedImageFormatError: a format Pillow knows outside :data:`ACCEPTED_FORMATS`.
    ImageDecodeError: the bytes are not a complete image of an accepted format.
  """
  # Opening reads the header only; the size is checked here, with the numbers.
  with _pillow_pixel_limit(None):
    try:
      image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Exception as e:  # pylint: disable=broad-except  # PIL raises many kinds.
      raise _not_opened(data, e) from None
  width, height = image.size
  if width * height > max_pixels:
    raise ImageTooLargeError(
        f'the image is {width}x{height} ({width * height:,} pixels), over '
        f'max_image_pixels={max_pixels:,}'
    )
  with _pillow_pixel_limit(max_pixels):
    try:
      image.load()  # Decode now: truncation shows up here, not later.
      return ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
      raise ImageTooLargeError(f'{e} (max_image_pixels={max_pixels:,})') from e
    except Exception as e:  # PIL raises many kinds (OSError, SyntaxError, ...).
      raise ImageDecodeError(f'cannot decode image: {image.format} {type(e).__name__}: {e}') from e


def _not_opened(data: bytes, error: Exception) -> ImageDecodeError:
  """Why ``Image.open`` of ``data`` failed: a refused format, or not a valid image."""
  if not data:
    return ImageDecodeError('cannot decode image: the file is empty')
  sniffed = _sniffed_format(data)
  if sniffed is not None and sniffed not in ACCEPTED_FORMATS:
    return UnsupportedImageFormatError(
        f'image format {sniffed} is not accepted (accepted: {", ".join(ACCEPTED_FORMATS)})'
    )
  if sniffed is not None:
    return ImageDecodeError(f'cannot decode image: not a valid {sniffed} file')
  if isinstance(error, Image.UnidentifiedImageError):
    return ImageDecodeError(
        f'cannot decode image: not an image (none of {", ".join(ACCEPTED_FORMATS)})'
    )
  return ImageDecodeError(f'cannot decode image: {type(error).__name__}: {error}')


def _to_8_bit(image: Image.Image) -> Image.Image:
  """A 16/32-bit integer grayscale image as mode L: values clipped to [0, 65535] and scaled
  by 255 / 65535, rounded (``(v + 128) // 257``, exact: 65535 = 255 * 257 and no value
  falls on a half). A block of rows at a time: besides the image, only the 8-bit result
  (1 byte a pixel) and one block exist, no float or whole-image copy."""
  width, height = image.size
  out = np.empty((height, width), np.uint8)
  rows = max(1, _CONVERT_BLOCK_PIXELS // max(width, 1))
  for top in range(0, height, rows):
    bottom = min(height, top + rows)
    block = np.asarray(image.crop((0, top, width, bottom))).astype(np.int32)
    np.clip(block, 0, _MAX_16_BIT, out=block)
    block += 128
    block //= 257
    out[top:bottom] = block
  return Image.fromarray(out)  # mode L


def to_rgb_on_white(image: Image.Image) -> Image.Image:
  """Any PIL image as mode RGB, transparent parts composited on white."""
  if image.mode in _HIGH_BIT_DEPTH_MODES:
    image = _to_8_bit(image)
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


def decode_and_preprocess(
    data: bytes, size: int, crop_margin: bool = True, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
  """:func:`decode_image` then :func:`preprocess_image`; uint8 ``[size, size, 3]``."""
  image = decode_image(data, max_pixels)
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
    max_pixels: larger encoded images are refused (:class:`ImageTooLargeError`).
  """

  size: int
  crop_margin: bool = True
  encoding: str = 'raw'
  jpeg_quality: int = 95
  max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


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
    pixels = decode_and_preprocess(image, spec.size, spec.crop_margin, spec.max_pixels)
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
