"""Image preprocessing and the three dataset builders, end to end on tiny data."""
import os

import numpy as np
import pytest
from PIL import Image
import tensorflow_datasets as tfds

import prepare_test_data as data
from input_pipeline import image_ops, prepare, synthetic_fashion
from input_pipeline.errors import BadRecordError, ImageDecodeError, PrepareError, SkippedRecords
from input_pipeline.image_workers import ImageWorkers
from input_pipeline.synthetic_builder import SyntheticOptions, SyntheticSource

SIZE = 256
TEXT_LENGTH = 64


def mean_colour(image: np.ndarray) -> np.ndarray:
  return image.reshape(-1, 3).mean(axis=0)


# -- image preprocessing --------------------------------------------------------


def test_white_margin_box_is_the_box_of_the_dark_content():
  image = np.full((60, 100, 3), 255, np.uint8)
  image[20:40, 10:50] = data.RED
  assert image_ops.white_margin_box(Image.fromarray(image)) == (10, 20, 50, 40)
  out = image_ops.preprocess_image(image, SIZE)
  assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
  assert (out == data.RED).all()  # Cropped to the rectangle exactly, then stretched.


def test_white_margin_crop_keeps_light_content_and_all_white_images():
  # convert('1') dithers: a light grey area still leaves black pixels in it.
  image = np.full((50, 50, 3), 255, np.uint8)
  image[10:30, 20:40] = 235
  box = image_ops.white_margin_box(Image.fromarray(image))
  # Within the few pixels the dithering needs to accumulate to a black pixel.
  assert np.abs(np.subtract(box, (20, 10, 40, 30))).max() <= 4, box
  white = np.full((8, 8, 3), 255, np.uint8)
  assert image_ops.white_margin_box(Image.fromarray(white)) is None
  assert (image_ops.preprocess_image(white, 16) == 255).all()


def test_crop_can_be_turned_off():
  out = image_ops.preprocess_image(data.product_array((40, 40), margin=10), 40, crop_margin=False)
  assert (out[:10] == 255).all() and (out[20, 20] == data.RED).all()


@pytest.mark.parametrize('name, expected', [
    ('rgb.jpg', data.RED),
    ('gray.png', None),
    ('palette.png', data.RED),
    ('bilevel.png', None),  # A dithered red: black and white dots.
    ('transparent.png', data.BLUE),  # The transparent red surround becomes white: cropped.
    ('gray_alpha.png', None),
    ('palette_transparent.png', data.BLUE),
    ('cmyk.jpg', (255, 0, 0)),
    ('sixteen_bit.png', (64, 64, 64)),
    ('thumbnail.png', data.RED),
])
def test_every_image_mode_becomes_rgb_on_white_cropped(name, expected):
  out = image_ops.decode_and_preprocess(data.images_of_every_mode()[name], SIZE)
  assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
  centre = out[64:192, 64:192].reshape(-1, 3)
  # The content fills the frame: no white margin is left at the borders.
  assert out[0].mean() < 250 and out[:, 0].mean() < 250
  if expected is None:  # Grayscale: R = G = B, dark.
    assert (centre[:, 0] == centre[:, 2]).all() and centre.mean() < 128
  else:
    np.testing.assert_allclose(centre.mean(axis=0), expected, atol=12)


def test_exif_orientation_is_applied():
  out = image_ops.decode_and_preprocess(data.images_of_every_mode()['exif_rotated.jpg'], SIZE)
  # Stored left red / right blue; turned 90 degrees clockwise: top red, bottom blue.
  np.testing.assert_allclose(mean_colour(out[:100]), data.RED, atol=15)
  np.testing.assert_allclose(mean_colour(out[156:]), data.BLUE, atol=15)


def test_undecodable_images_raise():
  png = data.images_of_every_mode()['gray.png']
  for bad in (b'not an image at all', png[:len(png) // 2], b''):
    with pytest.raises(ImageDecodeError, match='cannot decode image'):
      image_ops.decode_and_preprocess(bad, SIZE)


def test_image_workers_keep_order_and_match_serial():
  items = [(i, _Render(synthetic_fashion.sample_product(i, 0))) for i in range(5)]
  items.insert(2, ('bad', b'garbage'))
  items.insert(4, ('missing', BadRecordError('x.jsonl line 3', 'missing_image', 'gone')))
  spec = image_ops.StorageSpec(size=32)
  with ImageWorkers(spec, num_workers=1) as serial:
    expected = list(serial.process(items))
  with ImageWorkers(spec, num_workers=2, batch_size=2) as workers:
    got = list(workers.process(items))
  assert [key for key, _ in got] == [key for key, _ in items]
  assert isinstance(dict(got)['bad'], ImageDecodeError)
  assert dict(got)['missing'] is items[4][1]
  for (key, value), (_, want) in zip(got, expected):
    if key not in ('bad', 'missing'):
      assert value.shape == (32, 32, 3)
      np.testing.assert_array_equal(value, want)


class _Render:
  """A picklable drawing of view 0 of a synthetic product."""

  def __init__(self, product):
    self.product = product

  def __call__(self):
    return synthetic_fashion.render_view(self.product, 0, 0, 64)


# -- catalog ---------------------------------------------------------------------


@pytest.fixture(scope='module')
def catalog_dirs(tmp_path_factory):
  """A JSONL catalog (train + validation files) holding images of every mode."""
  root = tmp_path_factory.mktemp('catalog')
  manual = root / 'manual'
  images = data.images_of_every_mode()
  data.write_images(str(manual / 'images'), images)
  train = [data.catalog_record(i, f'images/{name}', product=i // 2,
                               category='TOPS' if i % 3 else 'SHOES',
                               subcategory='SHIRTS' if i % 3 else 'BOOTS')
           for i, name in enumerate(sorted(images))]
  validation = [data.catalog_record(100 + i, f'images/{name}', category='TOPS')
                for i, name in enumerate(['rgb.jpg', 'cmyk.jpg'])]
  data.write_jsonl(str(manual / 'train.jsonl'), train)
  data.write_jsonl(str(manual / 'validation.jsonl'), validation)
  return str(root / 'data'), str(manual), train, validation


@pytest.fixture(scope='module')
def catalog_summary(catalog_dirs):
  data_dir, manual, _, _ = catalog_dirs
  return prepare.prepare_dataset('catalog', data_dir, manual_dir=manual, vocab_size=60,
                                 text_length=TEXT_LENGTH, num_workers=1)


def test_catalog_prepares_every_image_mode(catalog_dirs, catalog_summary):
  data_dir, _, train, validation = catalog_dirs
  assert catalog_summary.num_examples == {'train': len(train), 'validation': len(validation)}
  assert catalog_summary.num_skipped == 0
  assert catalog_summary.category_counts['train'] == {'SHOES': 4, 'TOPS': 7}
  text = catalog_summary.format()
  assert 'train 11, validation 2' in text and 'skipped records: 0' in text

  builder = tfds.builder('catalog', data_dir=data_dir)
  features = builder.info.features
  assert features['image'].shape == (SIZE, SIZE, 3) and features['image'].np_dtype == np.uint8
  assert features['input_ids'].shape == (TEXT_LENGTH,)
  assert features['input_ids'].np_dtype == np.int32
  assert features['category'].names == ['SHOES', 'TOPS']
  assert features['subcategory'].names == ['BOOTS', 'SHIRTS']
  assert set(features.keys()) == {'id', 'product_id', 'image', 'caption', 'input_ids',
                                  'category', 'subcategory', 'pose'}

  prepared = prepare.load_prepared('catalog', data_dir)
  by_id = {r['id']: r for r in train}
  examples = list(tfds.as_numpy(builder.as_dataset(split='train')))
  assert sorted(e['id'].decode() for e in examples) == sorted(by_id)
  for example in examples:
    record = by_id[example['id'].decode()]
    assert example['image'].shape == (SIZE, SIZE, 3) and example['image'].dtype == np.uint8
    assert example['caption'].decode() == record['caption']
    assert example['product_id'].decode() == record['product_id']
    assert features['category'].int2str(example['category']) == record['category']
    assert example['pose'].decode() == 'front'
    np.testing.assert_array_equal(example['input_ids'],
                                  prepared.tokenizer.encode(record['caption'], TEXT_LENGTH))
    assert prepared.tokenizer.decode(example['input_ids']) == record['caption'].lower()
    if record['image'].endswith('transparent.png') and 'palette' not in record['image']:
      np.testing.assert_allclose(mean_colour(example['image']), data.BLUE, atol=3)


def test_catalog_metadata_and_tokenizer(catalog_dirs, catalog_summary):
  data_dir, _, _, _ = catalog_dirs
  prepared = prepare.load_prepared('catalog', data_dir)
  metadata = prepared.metadata
  assert metadata['main_categories'] == ['SHOES', 'TOPS']
  assert metadata['sub_categories'] == ['BOOTS', 'SHIRTS']
  assert metadata['text_length'] == TEXT_LENGTH
  assert metadata['caption_fields'] == 'caption'
  assert metadata['image_encoding'] == 'raw'
  assert metadata['skipped'] == {}
  tokenizer_info = metadata['tokenizer']
  assert tokenizer_info['kind'] == 'sentencepiece'
  assert tokenizer_info['special_ids'] == {'pad': 0, 'unk': 1, 'cls': 2, 'sep': 3, 'mask': 4}
  assert tokenizer_info['vocab_size'] == prepared.tokenizer.vocab_size
  assert tokenizer_info == catalog_summary.tokenizer
  assert os.path.isfile(os.path.join(data_dir, 'catalog', 'tokenizer', 'tokenizer.json'))
  assert sorted(os.listdir(os.path.join(data_dir, 'catalog'))) == ['1.0.0', 'tokenizer']


def test_preparing_again_reuses_or_refuses(catalog_dirs, catalog_summary):
  data_dir, manual, _, _ = catalog_dirs
  again = prepare.prepare_dataset('catalog', data_dir, manual_dir=manual, vocab_size=60,
                                  text_length=TEXT_LENGTH)
  assert again.already_prepared and again.num_examples == catalog_summary.num_examples
  with pytest.raises(PrepareError, match=r"other options.*text_length.*--overwrite"):
    prepare.prepare_dataset('catalog', data_dir, manual_dir=manual, vocab_size=60,
                            text_length=TEXT_LENGTH + 1)


def test_single_csv_catalog_is_split_by_product(tmp_path):
  manual = tmp_path / 'manual'
  data.write_images(str(manual / 'img'), {'a.png': data.images_of_every_mode()['gray.png']})
  rows = [data.catalog_record(i, 'img/a.png', product=i // 2, caption=f'Shirt, "size" {i}')
          for i in range(24)]
  data.write_csv(str(manual / 'catalog.csv'), rows)
  summary = prepare.prepare_dataset('catalog', str(tmp_path / 'data'), manual_dir=str(manual),
                                    vocab_size=40, text_length=16, validation_fraction=0.3,
                                    num_workers=1)
  assert sum(summary.num_examples.values()) == 24
  assert summary.num_examples['validation'] > 0 and summary.num_examples['train'] > 0
  builder = tfds.builder('catalog', data_dir=str(tmp_path / 'data'))
  products = {}
  for split in ('train', 'validation'):
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
      products.setdefault(example['product_id'].decode(), set()).add(split)
      number = int(example['id'].decode().removeprefix('item'))
      assert example['caption'].decode() == f'Shirt, "size" {number}'
  assert all(len(splits) == 1 for splits in products.values())  # No product in both splits.


# -- fashion_gen -----------------------------------------------------------------


@pytest.fixture(scope='module')
def fashion_gen_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp('fashion_gen')
  manual = root / 'manual'
  os.makedirs(manual)
  train = [
      data.fashion_gen_row(1001, 'Café shirt', pose='id_gridfs_1'),
      data.fashion_gen_row(1001, 'Café shirt', pose='id_gridfs_2'),
      data.fashion_gen_row(1002, 'Leather boots', 'SHOES', 'BOOTS', color=data.BLUE),
      data.fashion_gen_row(1003, '   ', description=' '),  # empty caption: skipped
  ]
  validation = [
      data.fashion_gen_row(2001, 'Wool hat', 'HATS', 'BEANIES'),  # only in validation
      data.fashion_gen_row(2002, 'Red shirt'),
  ]
  data.write_fashion_gen_h5(str(manual / 'fashiongen_256_256_train.h5'), train)
  data.write_fashion_gen_h5(str(manual / 'fashiongen_256_256_validation.h5'), validation)
  return str(root / 'data'), str(manual)


def test_fashion_gen_from_h5_files(fashion_gen_dirs, tmp_path):
  data_dir, manual = fashion_gen_dirs
  vocab_file = tmp_path / 'vocab.txt'
  data.write_bert_vocab(str(vocab_file), words=['cafe', 'shirt', 'leather', 'boots', 'a', '.',
                                          'wool', 'hat', 'red', 'no', 'title', 'here'])
  summary = prepare.prepare_dataset(
      'fashion_gen', data_dir, manual_dir=manual, tokenizer='wordpiece',
      vocab_file=str(vocab_file), caption_fields='title+description', text_length=16,
      num_workers=1)
  assert summary.num_examples == {'train': 3, 'validation': 2}
  assert summary.skipped == {'train': {'empty_caption': 1}}
  assert "fashiongen_256_256_train.h5 row 3 (id '1003_0')" in summary.format()

  prepared = prepare.load_prepared('fashion_gen', data_dir)
  # Classes are counted over train and validation.
  assert prepared.metadata['main_categories'] == ['HATS', 'SHOES', 'TOPS']
  assert prepared.metadata['sub_categories'] == ['BEANIES', 'BOOTS', 'SHIRTS']
  assert prepared.metadata['tokenizer']['kind'] == 'wordpiece'
  assert prepared.metadata['tokenizer']['special_ids']['cls'] == 101
  examples = {e['id'].decode(): e for e in tfds.as_numpy(
      prepared.builder.as_dataset(split='train'))}
  assert sorted(examples) == ['1001_0', '1001_1', '1002_0']
  shirt = examples['1001_1']
  assert shirt['caption'].decode() == 'Café shirt A shirt.'  # latin-1 decoded
  assert shirt['pose'].decode() == 'id_gridfs_2'
  assert shirt['product_id'].decode() == '1001'
  assert prepared.tokenizer.decode(shirt['input_ids']) == 'cafe shirt a shirt .'
  assert shirt['input_ids'][:2].tolist() == [101, prepared.tokenizer.tokenize('cafe')[0]]
  np.testing.assert_allclose(mean_colour(examples['1002_0']['image']), data.BLUE, atol=2)


# -- synthetic_fashion -----------------------------------------------------------


def test_synthetic_records_are_those_of_generate_catalog():
  options = SyntheticOptions(num_products=3, num_validation_products=1, max_views=3, seed=5)
  records = SyntheticSource(options).read_records(SkippedRecords())['train']
  views = list(synthetic_fashion.generate_catalog(3, 5, image_size=64, max_views=3))
  assert [r.id for r in records] == [v['id'] for v in views]
  for record, view in zip(records, views):
    assert (record.product_id, record.caption, record.category, record.subcategory,
            record.pose) == (view['product_id'], view['caption'], view['category'],
                             view['subcategory'], str(view['pose']))
  np.testing.assert_array_equal(records[-1].image_ref(),
                                synthetic_fashion.render_view(
                                    synthetic_fashion.sample_product(2, 5),
                                    int(views[-1]['pose']), 5, options.image_size))


def test_synthetic_fashion_builds_with_workers_and_jpeg(tmp_path):
  data_dir = str(tmp_path / 'data')
  summary = prepare.prepare_dataset(
      'synthetic_fashion', data_dir, num_products=3, num_validation_products=2, max_views=2,
      vocab_size=120, text_length=32, image_size=64, image_encoding='jpeg', num_workers=2)
  assert summary.num_examples['train'] >= 3 and summary.num_examples['validation'] >= 2
  examples = list(tfds.as_numpy(tfds.load('synthetic_fashion', data_dir=data_dir,
                                          split='validation')))
  assert len(examples) == summary.num_examples['validation']
  prepared = prepare.load_prepared('synthetic_fashion', data_dir)
  assert prepared.metadata['main_categories'] == synthetic_fashion.main_categories()
  assert prepared.metadata['image_encoding'] == 'jpeg'
  train_ids = {e['id'] for e in tfds.as_numpy(prepared.builder.as_dataset(split='train'))}
  for example in examples:
    assert example['image'].shape == (64, 64, 3) and example['image'].dtype == np.uint8
    assert example['image'].min() < 200  # A garment was drawn.
    assert example['id'] not in train_ids  # The validation catalog has its own seed.
    assert prepared.tokenizer.decode(example['input_ids']) in example['caption'].decode().lower()
