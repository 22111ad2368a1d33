"""prepare against user mistakes and hostile input (issue #16).

Every case ends with the data intact and either a skipped record that is named and counted or
one ``error: ...`` line, never a traceback:

1. memory: a file over ``max_image_bytes`` is not read, an image over ``max_image_pixels`` is
   not decoded, 16-bit images are scaled without a float64 copy;
2. formats: only the raster formats of ``image_ops.ACCEPTED_FORMATS`` are decoded;
3. a lock on the dataset's folder: a second ``prepare`` fails naming the first, a killed
   holder does not block;
4. hostile records (lone surrogates, deep JSON nesting, control characters) are skipped and
   named, and names are printed escaped;
5. a failed ``--overwrite`` keeps the old dataset; ``--strict`` is not silently ignored.
"""

import os
import signal
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

import prepare_test_data as data
from input_pipeline import image_ops, prepare
from input_pipeline.errors import ImageDecodeError, PrepareError
from mvlt_jax.errors import MVLTError
from test_prepare_bad_input import OPTIONS, REPO, make_catalog, run_cli, write_h5_pair

KWARGS = dict(vocab_size=40, text_length=16, num_workers=1)


def prepare_catalog(tmp_path, manual, **kwargs):
  return prepare.prepare_dataset(
      'catalog', str(tmp_path / 'data'), manual_dir=manual, **{**KWARGS, **kwargs}
  )


def cli(capsys, tmp_path, manual, *args):
  return run_cli(
      capsys,
      'catalog',
      f'--data_dir={tmp_path / "data"}',
      f'--manual_dir={manual}',
      *OPTIONS,
      *args,
  )


def write_image(manual, name, content: bytes):
  with open(os.path.join(manual, 'img', name), 'wb') as f:
    f.write(content)
  return os.path.join(manual, 'img', name)


def png_header_only(width: int, height: int, bit_depth: int = 16) -> bytes:
  """A grayscale PNG whose header says ``width`` x ``height`` (its pixel data is one row)."""

  def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))

  ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, 0, 0, 0, 0)
  row = zlib.compress(b'\0' * (1 + width * bit_depth // 8))
  return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', row) + chunk(b'IEND', b'')


def no_control_characters(text: str) -> bool:
  return all(c.isprintable() or c == '\n' for c in text)


# -- 1. memory: file size and pixel count are capped ---------------------------------------


def test_image_over_max_image_pixels_is_skipped_with_file_and_limit(tmp_path, capsys):
  manual = make_catalog(tmp_path, train_extra=[data.catalog_record(7, 'img/big.png')])
  path = write_image(manual, 'big.png', data.encode(Image.new('RGB', (60, 40), data.RED), 'PNG'))
  summary = prepare_catalog(tmp_path, manual, max_image_pixels=2240)  # good.png: 56x40 = 2240.
  assert summary.skipped == {'train': {'image_too_large': 1}}
  assert summary.num_examples == {'train': 3, 'validation': 2}
  assert (
      f"[train] train.jsonl line 4 (id 'item7'): {path}: the image is 60x40 (2,400 pixels), "
      'over max_image_pixels=2,240 [image_too_large]'
  ) in summary.format()
  # The limit is a flag too; --strict stops at the record, naming the file and the limit.
  code, err = cli(capsys, tmp_path / 'strict', manual, '--strict', '--max_image_pixels=1999')
  assert code == 1, err
  assert (
      f"train.jsonl line 1 (id 'item0'): {manual}/img/good.png: the image is 56x40 "
      '(2,240 pixels), over max_image_pixels=1,999 [image_too_large]'
  ) in err, err


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
  # 13000 x 13000 16-bit: 338 MB of pixels, 2.7 GB as float64; refused from its header.
  manual = make_catalog(tmp_path, validation_extra=[data.catalog_record(8, 'img/bomb.png')])
  path = write_image(manual, 'bomb.png', png_header_only(13000, 13000))
  summary = prepare_catalog(tmp_path, manual)
  assert summary.skipped == {'validation': {'image_too_large': 1}}
  assert (
      f'{path}: the image is 13000x13000 (169,000,000 pixels), over '
      'max_image_pixels=100,000,000 [image_too_large]'
  ) in summary.format()
  with pytest.raises(image_ops.ImageTooLargeError, match='over max_image_pixels=1,000'):
    image_ops.decode_image(png_header_only(100, 100), max_pixels=1000)


def test_file_over_max_image_bytes_is_not_read(tmp_path):
  manual = make_catalog(tmp_path, train_extra=[data.catalog_record(9, 'img/huge.jpg')])
  path = os.path.join(manual, 'img', 'huge.jpg')
  with open(path, 'wb') as f:  # Sparse: 64 MiB + 1 byte of nothing, over the default limit.
    f.truncate(64 * 2**20 + 1)
  summary = prepare_catalog(tmp_path, manual)
  assert summary.skipped == {'train': {'image_too_large': 1}}
  assert (
      f"train.jsonl line 4 (id 'item9'): {path}: the file is 67,108,865 bytes, over "
      'max_image_bytes=67,108,864 [image_too_large]'
  ) in summary.format()


def test_fashion_gen_images_over_max_image_pixels_are_fatal(tmp_path, capsys):
  manual = tmp_path / 'manual'
  write_h5_pair(str(manual))  # 256 x 256 images
  code, err = run_cli(
      capsys,
      'fashion_gen',
      f'--data_dir={tmp_path / "data"}',
      f'--manual_dir={manual}',
      '--max_image_pixels=65535',
      *OPTIONS,
  )
  assert code == 1
  assert (
      f'prepare fashion_gen: error: {manual}/fashiongen_256_256_train.h5: its images are '
      '256x256 (65,536 pixels), over max_image_pixels=65,535'
  ) in err, err


def test_sixteen_bit_images_are_scaled_without_a_float_copy():
  values = np.arange(1024 * 1024, dtype=np.uint32).reshape(1024, 1024) * 61 % 65536
  image = Image.fromarray(values.astype(np.uint16))  # mode I;16
  assert image.mode == 'I;16'
  tracemalloc.start()
  try:
    out = image_ops.to_rgb_on_white(image)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  expected = np.round(values * 255.0 / 65535).astype(np.uint8)
  np.testing.assert_array_equal(np.asarray(out)[..., 0], expected)
  # The 8-bit result (1 byte a pixel) and one block of rows; no 8-byte float per pixel.
  assert peak < 4 * values.size, peak
  i_mode = Image.fromarray(np.array([[-5, 0, 128, 129, 70000]], np.int32))  # mode I: clipped
  np.testing.assert_array_equal(
      np.asarray(image_ops.to_rgb_on_white(i_mode))[0, :, 0], [0, 0, 0, 1, 255]
  )


# -- 2. only raster formats of a fixed list are decoded -------------------------------------

EPS = (
    b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\n'
    b'0 0 moveto 32 32 lineto stroke\nshowpage\n%%EOF\n'
)


def test_eps_and_other_formats_are_not_decoded(tmp_path, monkeypatch):
  from PIL import EpsImagePlugin  # pylint: disable=import-outside-toplevel

  def no_ghostscript(*args, **kwargs):
    raise AssertionError('Ghostscript was about to run')

  monkeypatch.setattr(EpsImagePlugin, 'Ghostscript', no_ghostscript)
  ppm = data.encode(Image.new('RGB', (32, 32), data.RED), 'PPM')
  manual = make_catalog(
      tmp_path,
      train_extra=[data.catalog_record(10, 'img/drawing.eps')],
      validation_extra=[data.catalog_record(11, 'img/photo.jpg')],  # A PPM named .jpg
  )
  eps_path = write_image(manual, 'drawing.eps', EPS)
  ppm_path = write_image(manual, 'photo.jpg', ppm)
  summary = prepare_catalog(tmp_path, manual)
  assert summary.skipped == {
      'train': {'unsupported_format': 1},
      'validation': {'unsupported_format': 1},
  }
  accepted = ', '.join(image_ops.ACCEPTED_FORMATS)
  text = summary.format()
  assert f'{eps_path}: image format EPS is not accepted (accepted: {accepted})' in text, text
  assert f'{ppm_path}: image format PPM is not accepted' in text


RASTER_FORMATS = ('JPEG', 'PNG', 'WEBP', 'GIF', 'BMP', 'TIFF')


def test_the_accepted_formats():
  assert image_ops.ACCEPTED_FORMATS == RASTER_FORMATS


@pytest.mark.parametrize('fmt', RASTER_FORMATS)
def test_every_accepted_format_decodes(fmt):
  encoded = data.encode(Image.fromarray(data.product_array((32, 32))), fmt)
  out = image_ops.decode_and_preprocess(encoded, 32)
  np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), data.RED, atol=12)


def test_garbage_is_a_corrupt_image_not_a_format():
  with pytest.raises(ImageDecodeError, match='cannot decode image') as raised:
    image_ops.decode_image(b'\xff\xd8\xff\xe0 not really a JPEG')
  assert raised.value.reason == 'corrupt_image' and 'JPEG' in str(raised.value)
  with pytest.raises(ImageDecodeError, match='not an image') as raised:
    image_ops.decode_image(b'plain text')
  assert raised.value.reason == 'corrupt_image'


# -- 3. one preparation per dataset folder at a time ----------------------------------------

HOLD_LOCK = """
import sys, time
from mvlt_jax import locking
with locking.exclusive(sys.argv[1], 'the test holder'):
  print('locked', flush=True)
  time.sleep(600)
"""


def test_second_prepare_fails_naming_the_holder_and_a_killed_holder_does_not_block(
    tmp_path, capsys
):
  manual = make_catalog(tmp_path)
  root = tmp_path / 'data' / 'catalog'
  os.makedirs(root)
  holder = subprocess.Popen(
      [sys.executable, '-c', HOLD_LOCK, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == 'locked'
    code, err = cli(capsys, tmp_path, manual)
    assert code == 1
    assert err.startswith(f'prepare catalog: error: {root} is in use by process {holder.pid} ')
    assert len(err.strip().splitlines()) == 1, err
    with pytest.raises(MVLTError, match=f'process {holder.pid} '):  # MVLTError
      prepare_catalog(tmp_path, manual)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  summary = prepare_catalog(tmp_path, manual)  # The kernel released the killed holder's lock.
  assert summary.num_examples == {'train': 3, 'validation': 2}
  prepare.load_prepared('catalog', str(tmp_path / 'data'))


# -- 4. hostile records are skipped, named, and printed escaped --------------------------------


def test_lone_surrogates_and_deep_nesting_are_skipped_records(tmp_path, capsys):
  surrogate = '\ud800'
  fields = ('id', 'product_id', 'pose', 'category', 'caption')
  hostile = [
      data.catalog_record(20 + i, 'img/good.png', **{f: f'x{surrogate}y'})
      for i, f in enumerate(fields)
  ]
  deep = '[' * 100_000 + ']' * 100_000
  manual = make_catalog(tmp_path, train_extra=hostile + [deep])
  summary = prepare_catalog(tmp_path, manual)
  assert summary.skipped == {'train': {'invalid_record': 6}}
  assert summary.num_examples == {'train': 3, 'validation': 2}
  text = summary.format()
  assert no_control_characters(text)
  text.encode('utf-8')  # Printable: no surrogate left in it.
  for line, field in enumerate(fields, start=4):
    assert f'train.jsonl line {line}' in text
    assert f"the field '{field}' is not valid Unicode (a lone surrogate \\ud800)" in text, text
  assert 'train.jsonl line 9: the JSON is nested too deeply' in text
  code, err = cli(capsys, tmp_path / 'strict', manual, '--strict')
  assert code == 1 and "the field 'id' is not valid Unicode" in err
  err.encode('utf-8')


def test_control_characters_in_names_are_escaped(tmp_path, capsys):
  evil_id = 'item\x1b[2J\x1b]0;pwned\x07'
  evil_image = 'img/\x1b[31mred\u202e.png'  # Missing; its path is in the message.
  manual = make_catalog(
      tmp_path,
      train_extra=[
          data.catalog_record(40, evil_image),
          data.catalog_record(41, 'img/none.png', id=evil_id),
          data.catalog_record(42, 'img/good.png', category='TOPS\x1b[8m'),
      ],
  )
  summary = prepare_catalog(tmp_path, manual)
  text = summary.format()
  assert no_control_characters(text), repr(text)
  assert 'img/\\x1b[31mred\\u202e.png' in text
  assert 'item\\x1b[2J\\x1b]0;pwned\\x07' in text
  assert 'TOPS\\x1b[8m 1' in text  # The examples per category.
  capsys.readouterr()  # TFDS's progress bars of the run above.
  code, err = cli(capsys, tmp_path / 'strict', manual, '--strict')
  assert code == 1, err
  assert no_control_characters(err) and 'img/\\x1b[31mred\\u202e.png' in err, repr(err)


# -- 5. a failed overwrite keeps the dataset; --strict means strict --------------------------


def test_failed_strict_overwrite_keeps_the_prepared_dataset(tmp_path, capsys):
  manual = make_catalog(tmp_path)
  data_dir = str(tmp_path / 'data')
  before = prepare_catalog(tmp_path, manual)
  # The catalog gains a corrupt image: the strict overwrite stops at it...
  data.write_jsonl(
      os.path.join(manual, 'validation.jsonl'),
      [data.catalog_record(50 + i, 'img/good.png', product=50 + i) for i in range(2)]
      + [data.catalog_record(60, 'img/corrupt.jpg')],
  )
  code, err = cli(capsys, tmp_path, manual, '--strict', '--overwrite')
  assert code == 1 and "(id 'item60')" in err and '[corrupt_image]' in err, err
  # ... and the dataset prepared before is still there, whole.
  prepared = prepare.load_prepared('catalog', data_dir)
  assert prepared.builder.info.splits['validation'].num_examples == 2
  assert prepared.metadata['split_counts'] == before.split_counts
  assert sorted(e for e in os.listdir(os.path.join(data_dir, 'catalog')) if e[0] != '.') == [
      '1.0.0',
      'tokenizer',
  ]
  again = prepare_catalog(tmp_path, manual)
  assert again.already_prepared


def test_overwrite_failing_midway_keeps_the_prepared_dataset(tmp_path):
  # Every validation image is corrupt: a fatal error once the train split is written.
  manual = make_catalog(tmp_path)
  data_dir = str(tmp_path / 'data')
  prepare_catalog(tmp_path, manual)
  write_image(manual, 'good.png', b'no longer a PNG')
  with pytest.raises(PrepareError, match="no record of split 'train' has a usable image"):
    prepare_catalog(tmp_path, manual, overwrite=True, text_length=20)
  prepared = prepare.load_prepared('catalog', data_dir)
  assert prepared.metadata['text_length'] == 16
  assert [e for e in os.listdir(os.path.join(data_dir, 'catalog')) if e[0] == '.'] == ['.lock']


def test_interrupted_swap_puts_the_old_dataset_back_and_a_dead_one_leaves_no_mix(
    tmp_path, monkeypatch
):
  manual = make_catalog(tmp_path)
  data_dir = str(tmp_path / 'data')
  prepare_catalog(tmp_path, manual)
  move, install = prepare._move_into_place, prepare._install

  def interrupted_at_the_tokenizer(staged, final):
    if os.path.basename(final) == prepare.TOKENIZER_DIR:
      raise KeyboardInterrupt
    move(staged, final)

  monkeypatch.setattr(prepare, '_move_into_place', interrupted_at_the_tokenizer)
  with pytest.raises(KeyboardInterrupt):  # Ctrl-C between the two moves: both put back.
    prepare_catalog(tmp_path, manual, overwrite=True, text_length=20)
  assert prepare.load_prepared('catalog', data_dir).metadata['text_length'] == 16
  monkeypatch.undo()

  def dies_between_the_moves(staged_root, root, entries, replaced_dir):
    install(staged_root, root, entries[:1], replaced_dir)  # The new version only.
    raise SystemExit('killed')

  monkeypatch.setattr(prepare, '_install', dies_between_the_moves)
  data.write_jsonl(  # Other captions: another tokenizer.
      os.path.join(manual, 'train.jsonl'),
      [
          data.catalog_record(i, 'img/good.png', product=i, caption=f'blue wool coat {i}')
          for i in range(3)
      ],
  )
  with pytest.raises(SystemExit):
    prepare_catalog(tmp_path, manual, overwrite=True, text_length=20)
  # New version, old tokenizer: refused, not mixed; the next run prepares it again.
  with pytest.raises(prepare.NotPreparedError, match='not the one the dataset was built with'):
    prepare.load_prepared('catalog', data_dir)
  monkeypatch.undo()
  assert not prepare_catalog(tmp_path, manual, text_length=20).already_prepared


def test_strict_on_a_leniently_prepared_dataset_is_refused(tmp_path, capsys):
  manual = make_catalog(tmp_path, train_extra=[data.catalog_record(70, 'img/corrupt.jpg')])
  code, _ = cli(capsys, tmp_path, manual)
  assert code == 0
  code, err = cli(capsys, tmp_path, manual, '--strict')
  assert code == 1
  assert (
      f'catalog in {tmp_path / "data"} was prepared skipping 1 record (train: corrupt_image 1)'
  ) in err, err
  assert '--strict --overwrite' in err
  prepare.load_prepared('catalog', str(tmp_path / 'data'))  # Untouched.
  # Strictly, once the input is repaired.
  write_image(manual, 'corrupt.jpg', data.images_of_every_mode()['rgb.jpg'])
  code, err = cli(capsys, tmp_path, manual, '--strict', '--overwrite')
  assert code == 0, err
  code, err = cli(capsys, tmp_path, manual, '--strict')  # Nothing skipped: already prepared.
  assert code == 0, err
  assert prepare.load_prepared('catalog', str(tmp_path / 'data')).metadata['skipped'] == {}
