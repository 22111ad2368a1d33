"""Tiny inputs for the preparation tests: images of every mode, catalogs, Fashion-Gen h5 files."""

import io
import json
import os

import h5py
import numpy as np
from PIL import Image

from input_pipeline import tokenizer as tok

RED = (200, 30, 30)
BLUE = (30, 40, 190)
WHITE = (255, 255, 255)


def product_array(size=(40, 56), color=RED, margin=6) -> np.ndarray:
  """uint8 [H, W, 3]: a ``color`` rectangle with a white margin of ``margin`` px."""
  height, width = size
  image = np.full((height, width, 3), 255, np.uint8)
  image[margin : height - margin, margin : width - margin] = color
  return image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  out = io.BytesIO()
  image.save(out, format=fmt, **kwargs)
  return out.getvalue()


def transparent_png() -> bytes:
  """RGBA: an opaque blue square inside a fully transparent (but red) surround."""
  rgba = np.zeros((40, 40, 4), np.uint8)
  rgba[..., :3] = RED
  rgba[10:30, 10:30] = BLUE + (255,)
  return encode(Image.fromarray(rgba), 'PNG')


def exif_rotated_jpeg() -> bytes:
  """20x40 (H x W), left half red, right half blue, EXIF orientation 6 (turn 90 deg clockwise)."""
  image = np.zeros((20, 40, 3), np.uint8)
  image[:, :20] = RED
  image[:, 20:] = BLUE
  exif = Image.Exif()
  exif[0x0112] = 6
  return encode(Image.fromarray(image), 'JPEG', quality=95, exif=exif.tobytes())


def sixteen_bit_png() -> bytes:
  """16-bit grayscale: white (65535) margin around a dark (16448 = 64 * 257) square."""
  gray = np.full((30, 30), 65535, np.uint16)
  gray[5:25, 5:25] = 64 * 257
  return encode(Image.fromarray(gray), 'PNG')


def cmyk_jpeg() -> bytes:
  """CMYK JPEG: white margin (no ink) around a red (magenta + yellow) square."""
  cmyk = np.zeros((32, 32, 4), np.uint8)
  cmyk[6:26, 6:26] = (0, 255, 255, 0)
  return encode(Image.frombytes('CMYK', (32, 32), cmyk.tobytes()), 'JPEG', quality=95)


def palette_transparent_png() -> bytes:
  """Palette image whose surround is the transparent index."""
  indices = np.zeros((24, 24), np.uint8)
  indices[4:20, 4:20] = 1
  image = Image.frombytes('P', (24, 24), indices.tobytes())
  image.putpalette([0, 0, 0] + list(BLUE) + [0] * (254 * 3))
  return encode(image, 'PNG', transparency=0)


def images_of_every_mode() -> dict[str, bytes]:
  """Encoded images of every kind a catalog may hold, each a product on white."""
  rgb = product_array()
  return {
      'rgb.jpg': encode(Image.fromarray(rgb), 'JPEG', quality=95),
      'gray.png': encode(Image.fromarray(rgb).convert('L'), 'PNG'),
      'palette.png': encode(Image.fromarray(rgb).convert('P'), 'PNG'),
      'bilevel.png': encode(Image.fromarray(rgb).convert('1'), 'PNG'),
      'transparent.png': transparent_png(),
      'gray_alpha.png': encode(Image.fromarray(transparent_png_array()).convert('LA'), 'PNG'),
      'palette_transparent.png': palette_transparent_png(),
      'cmyk.jpg': cmyk_jpeg(),
      'sixteen_bit.png': sixteen_bit_png(),
      'thumbnail.png': encode(Image.fromarray(product_array((3, 2), margin=0)), 'PNG'),
      'exif_rotated.jpg': exif_rotated_jpeg(),
  }


def transparent_png_array() -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(transparent_png())))


def write_images(folder: str, images: dict[str, bytes]) -> None:
  os.makedirs(folder, exist_ok=True)
  for name, data in images.items():
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(data)


def catalog_record(
    index: int,
    image: str,
    *,
    product: int | None = None,
    category='TOPS',
    subcategory='SHIRTS',
    **overrides,
) -> dict:
  record = {
      'id': f'item{index}',
      'product_id': f'prod{index if product is None else product}',
      'image': image,
      'caption': f'Red cotton shirt number {index} with long sleeves',
      'category': category,
      'subcategory': subcategory,
      'pose': 'front',
  }
  record.update(overrides)
  return record


def write_jsonl(path: str, records: list) -> None:
  """One line per record: dicts become JSON, bytes/str are written as they are."""
  with open(path, 'wb') as f:
    for record in records:
      if isinstance(record, dict):
        record = json.dumps(record)
      if isinstance(record, str):
        record = record.encode('utf-8')
      f.write(record + b'\n')


def write_csv(
    path: str,
    rows: list,
    header=('id', 'product_id', 'image', 'caption', 'category', 'subcategory', 'pose'),
) -> None:
  """``rows``: dicts (quoted values joined by commas) or raw bytes lines."""
  lines = [','.join(header).encode('utf-8')]
  for row in rows:
    if isinstance(row, dict):
      row = ','.join('"' + str(row.get(k, '')).replace('"', '""') + '"' for k in header).encode(
          'utf-8'
      )
    lines.append(row)
  with open(path, 'wb') as f:
    f.write(b'\r\n'.join(lines) + b'\r\n')


FASHION_GEN_TEXT_FIELDS = (
    'input_name',
    'input_description',
    'input_category',
    'input_subcategory',
    'input_pose',
)


def write_fashion_gen_h5(path: str, rows: list[dict], drop=()) -> None:
  """An h5 file in the official layout; each row: product_id, name, description, ...

  Text fields are [N, 1] latin-1 byte strings, ``input_productID`` int [N, 1],
  ``input_image`` uint8 [N, 256, 256, 3]. ``drop`` leaves datasets out.
  """
  with h5py.File(path, 'w') as f:
    if 'input_image' not in drop:
      f['input_image'] = np.stack([row['image'] for row in rows]).astype(np.uint8)
    if 'input_productID' not in drop:
      f['input_productID'] = np.array([[row['product_id']] for row in rows], np.int32)
    for field in FASHION_GEN_TEXT_FIELDS:
      if field in drop:
        continue
      values = [row[field.removeprefix('input_')].encode('latin-1') for row in rows]
      width = max(len(v) for v in values) or 1
      f[field] = np.array([[v] for v in values], dtype=f'S{width}')
    f['input_brand'] = np.array([[b'ACME']] * len(rows), dtype='S4')


def fashion_gen_row(
    product_id: int,
    name: str,
    category='TOPS',
    subcategory='SHIRTS',
    pose='id_gridfs_1',
    description='A shirt.',
    color=RED,
) -> dict:
  return dict(
      product_id=product_id,
      name=name,
      description=description,
      category=category,
      subcategory=subcategory,
      pose=pose,
      image=product_array((256, 256), color=color, margin=40),
  )


def write_bert_vocab(path, special_ids=tok.BERT_UNCASED_SPECIAL_IDS, words=()) -> list[str]:
  """A tiny vocab.txt: ``[unusedN]`` fillers, the special tokens at ``special_ids``, ``words``."""
  size = max(special_ids.as_tuple()) + 1
  vocab = [f'[unused{i}]' for i in range(size)]
  for token, index in zip(tok.SPECIAL_TOKENS, special_ids.as_tuple()):
    vocab[index] = token
  vocab += list(words)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(vocab) + '\n')
  return vocab
