"""Image preprocessing and the three dataset builders, end to end on tiny data."""

import os
import random
import time

import numpy as np
import pytest
from PIL import Image
import tensorflow_datasets as tfds

import prepare_test_data as data
from input_pipeline import image_ops, prepare, synthetic_render
from input_pipeline.datasets import catalog
from input_pipeline.datasets.base import SourceRecord
from input_pipeline.datasets.synthetic_fashion import SyntheticOptions, SyntheticSource
from input_pipeline.errors import BadRecordError, ImageDecodeError, PrepareError, SkippedRecords
from input_pipeline.image_workers import ImageWorkers

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


@pytest.mark.parametrize(
    'name, expected',
    [
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
    ],
)
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
  for bad in (b'not an image at all', png[: len(png) // 2], b''):
    with pytest.raises(ImageDecodeError, match='cannot decode image'):
      image_ops.decode_and_preprocess(bad, SIZE)


def test_image_workers_keep_order_and_match_serial():
  items = [(i, _Render(synthetic_render.sample_product(i, 0))) for i in range(5)]
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
    return synthetic_render.render_view(self.product, 0, 0, 64)


# -- catalog ---------------------------------------------------------------------


@pytest.fixture(scope='module')
def catalog_dirs(tmp_path_factory):
  """A JSONL catalog (train + validation files) holding images of every mode."""
  root = tmp_path_factory.mktemp('catalog')
  manual = root / 'manual'
  images = data.images_of_every_mode()
  data.write_images(str(manual / 'images'), images)
  train = [
      data.catalog_record(
          i,
          f'images/{name}',
          product=i // 2,
          category='TOPS' if i % 3 else 'SHOES',
          subcategory='SHIRTS' if i % 3 else 'BOOTS',
      )
      for i, name in enumerate(sorted(images))
  ]
  validation = [
      data.catalog_record(100 + i, f'images/{name}', category='TOPS')
      for i, name in enumerate(['rgb.jpg', 'cmyk.jpg'])
  ]
  data.write_jsonl(str(manual / 'train.jsonl'), train)
  data.write_jsonl(str(manual / 'validation.jsonl'), validation)
  return str(root / 'data'), str(manual), train, validation


@pytest.fixture(scope='module')
def catalog_summary(catalog_dirs):
  data_dir, manual, _, _ = catalog_dirs
  return prepare.prepare_dataset(
      'catalog', data_dir, manual_dir=manual, vocab_size=60, text_length=TEXT_LENGTH, num_workers=1
  )


def test_catalog_prepares_every_image_mode(catalog_dirs, catalog_summary):
  data_dir, _, train, validation = catalog_dirs
  assert catalog_summary.num_examples == {'train': len(train), 'validation': len(validation)}
  assert catalog_summary.num_skipped == 0
  assert catalog_summary.category_counts['train'] == {'SHOES': 4, 'TOPS': 7}
  text = catalog_summary.format()
  assert 'train 11, validation 2' in text and 'skipped records: 0' in text
  assert (
      'split: train 11 records, 6 products, 2 categories, 2 sub-categories; validation '
      '2 records, 2 products, 1 category, 1 sub-category (1 sub-category, 1 category '
      'only in train)'
  ) in text.splitlines()

  builder = tfds.builder('catalog', data_dir=data_dir)
  features = builder.info.features
  assert features['image'].shape == (SIZE, SIZE, 3) and features['image'].np_dtype == np.uint8
  assert features['input_ids'].shape == (TEXT_LENGTH,)
  assert features['input_ids'].np_dtype == np.int32
  assert features['category'].names == ['SHOES', 'TOPS']
  assert features['subcategory'].names == ['BOOTS', 'SHIRTS']
  assert set(features.keys()) == {
      'id',
      'product_id',
      'image',
      'caption',
      'input_ids',
      'category',
      'subcategory',
      'pose',
  }

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
    np.testing.assert_array_equal(
        example['input_ids'], prepared.tokenizer.encode(record['caption'], TEXT_LENGTH)
    )
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
  assert metadata['split_counts'] == {
      'train': {'records': 11, 'products': 6, 'categories': 2, 'subcategories': 2},
      'validation': {'records': 2, 'products': 2, 'categories': 1, 'subcategories': 1},
      'only_in_train': {'categories': 1, 'subcategories': 1},
  }
  tokenizer_info = metadata['tokenizer']
  assert tokenizer_info['kind'] == 'sentencepiece'
  assert tokenizer_info['special_ids'] == {'pad': 0, 'unk': 1, 'cls': 2, 'sep': 3, 'mask': 4}
  assert tokenizer_info['vocab_size'] == prepared.tokenizer.vocab_size
  assert tokenizer_info == catalog_summary.tokenizer
  assert os.path.isfile(os.path.join(data_dir, 'catalog', 'tokenizer', 'tokenizer.json'))
  # (.lock: prepare's lock on the folder, see mvlt_jax.locking.)
  assert sorted(os.listdir(os.path.join(data_dir, 'catalog'))) == ['.lock', '1.0.0', 'tokenizer']


def test_preparing_again_reuses_or_refuses(catalog_dirs, catalog_summary):
  data_dir, manual, _, _ = catalog_dirs
  again = prepare.prepare_dataset(
      'catalog', data_dir, manual_dir=manual, vocab_size=60, text_length=TEXT_LENGTH
  )
  assert again.already_prepared and again.num_examples == catalog_summary.num_examples
  with pytest.raises(PrepareError, match=r'other options.*text_length.*--overwrite'):
    prepare.prepare_dataset(
        'catalog', data_dir, manual_dir=manual, vocab_size=60, text_length=TEXT_LENGTH + 1
    )


def test_single_csv_catalog_is_split_by_product(tmp_path):
  manual = tmp_path / 'manual'
  data.write_images(str(manual / 'img'), {'a.png': data.images_of_every_mode()['gray.png']})
  rows = [
      data.catalog_record(i, 'img/a.png', product=i // 2, caption=f'Shirt, "size" {i}')
      for i in range(24)
  ]
  data.write_csv(str(manual / 'catalog.csv'), rows)
  summary = prepare.prepare_dataset(
      'catalog',
      str(tmp_path / 'data'),
      manual_dir=str(manual),
      vocab_size=40,
      text_length=16,
      validation_fraction=0.3,
      num_workers=1,
  )
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


# -- the split of a single-file catalog ------------------------------------------

LONG_TAIL_FRACTION = 0.15
LONG_TAIL_CATEGORIES = ('TOPS', 'BOTTOMS', 'SHOES', 'BAGS', 'ACCESSORIES')


def long_tail_catalog(num_products=200):
  """The records (dicts, images not written) of a long-tailed catalog, as real ones are.

  Products ``sku-0000``...: 1-3 views each; sub-categories of 30 products down to 1;
  among the lone ones, five whose product is a validation candidate (hash below
  ``LONG_TAIL_FRACTION``), and a category (EYEWEAR) of one candidate product; a pair of
  candidates alone in their sub-category; a candidate whose views disagree on the
  sub-category, the second one found nowhere else. Records are in a shuffled order.
  """
  products = [f'sku-{i:04d}' for i in range(num_products)]
  candidates = [p for p in products if catalog._is_validation_product(p, LONG_TAIL_FRACTION)]
  others = [p for p in products if p not in candidates]
  classes = {}  # product -> [(category, subcategory) of each view]
  classes[candidates[0]] = [('EYEWEAR', 'SUNGLASSES')]
  for k, product in enumerate(candidates[1:6]):
    classes[product] = [(LONG_TAIL_CATEGORIES[k], f'LONE-V{k}')]
  for k, product in enumerate(others[:10]):
    classes[product] = [(LONG_TAIL_CATEGORIES[k % 5], f'LONE-T{k}')]
  classes[candidates[6]] = [('BAGS', 'PAIR')]
  classes[candidates[7]] = [('BAGS', 'PAIR')]
  classes[candidates[8]] = [('TOPS', 'SHIRTS'), ('TOPS', 'SHIRT-DETAIL')]
  rest = [p for p in products if p not in classes]
  sizes = [30, 20, 15, 12, 10, 8, 6, 5, 4, 4, 3, 3, 3] + [2] * 20
  start = 0
  for k, size in enumerate(sizes):
    subcategory = 'SHIRTS' if k == 0 else f'SUB{k}'
    for product in rest[start : start + size]:
      classes[product] = [(LONG_TAIL_CATEGORIES[k % 5], subcategory)]
    start += size
  for product in rest[start:]:
    classes[product] = [(LONG_TAIL_CATEGORIES[0], 'SHIRTS')]
  records = []
  for i, product in enumerate(products):
    for view in range(1 + i % 3):
      category, subcategory = classes[product][view % len(classes[product])]
      thumbnail = (i + view) % 2 == 0
      records.append(
          {
              'id': f'{product}-{view}',
              'product_id': product,
              'image': f'images/{product}-{view}.{"png" if thumbnail else "jpg"}',
              'caption': f'{subcategory.lower()} number {i} in {category.lower()} view {view}',
              'category': category,
              'subcategory': subcategory,
              'pose': str(view),
          }
      )
  random.Random(0).shuffle(records)
  return records


def write_long_tail_images(folder, records):
  """Thumbnails of 60x80 (PNG) and photos of 360x540 (JPEG), W x H."""
  os.makedirs(folder, exist_ok=True)
  colours = (data.RED, data.BLUE, (40, 160, 60))
  for n, record in enumerate(records):
    name = os.path.basename(record['image'])
    if name.endswith('.png'):
      image = data.product_array((80, 60), color=colours[n % 3], margin=5)
      payload = data.encode(Image.fromarray(image), 'PNG')
    else:
      image = data.product_array((540, 360), color=colours[n % 3], margin=30)
      payload = data.encode(Image.fromarray(image), 'JPEG', quality=85)
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(payload)


def classes_by_split(split_of_product, records):
  """{split: (categories, sub-categories)} of ``records`` under the product split."""
  out = {'train': (set(), set()), 'validation': (set(), set())}
  for record in records:
    categories, subcategories = out[split_of_product[record['product_id']]]
    categories.add(record['category'])
    subcategories.add(record['subcategory'])
  return out


def test_long_tail_single_file_catalog_keeps_every_validation_class_in_train(tmp_path, capsys):
  records = long_tail_catalog()
  manual = tmp_path / 'manual'
  write_long_tail_images(str(manual / 'images'), records)
  data.write_jsonl(str(manual / 'catalog.jsonl'), records)
  products = {r['product_id'] for r in records}

  # The hash alone would put lone products (of a sub-category, of a category) in
  # validation: the old split fails --strict (and loses them without it).
  old_split = {
      p: 'validation' if catalog._is_validation_product(p, LONG_TAIL_FRACTION) else 'train'
      for p in products
  }
  old = classes_by_split(old_split, records)
  assert 'EYEWEAR' in old['validation'][0] - old['train'][0]
  assert {f'LONE-V{k}' for k in range(5)} | {'PAIR', 'SHIRT-DETAIL'} <= (
      old['validation'][1] - old['train'][1]
  )

  data_dir = str(tmp_path / 'data')
  start = time.perf_counter()
  code = prepare.main(
      [
          'catalog',
          f'--data_dir={data_dir}',
          f'--manual_dir={manual}',
          '--strict',
          f'--validation_fraction={LONG_TAIL_FRACTION}',
          '--image_size=32',
          '--text_length=16',
          '--vocab_size=80',
          '--num_workers=2',
      ]
  )
  out, err = capsys.readouterr()
  assert code == 0, err
  print(f'prepared {len(records)} records in {time.perf_counter() - start:.1f} s')

  builder = tfds.builder('catalog', data_dir=data_dir)
  features = builder.info.features
  written = {}  # split -> examples as (id, product, category, sub-category)
  for split in ('train', 'validation'):
    written[split] = [
        (
            e['id'].decode(),
            e['product_id'].decode(),
            features['category'].int2str(e['category']),
            features['subcategory'].int2str(e['subcategory']),
        )
        for e in tfds.as_numpy(builder.as_dataset(split=split))
    ]
  # No record lost, every product in one split.
  assert sorted(i for split in written.values() for i, _, _, _ in split) == sorted(
      r['id'] for r in records
  )
  split_of_product = {p: split for split, examples in written.items() for _, p, _, _ in examples}
  assert len(split_of_product) == len(products)
  for split, examples in written.items():
    assert all(split_of_product[p] == split for _, p, _, _ in examples)
  # Every class of validation is in train; only candidates moved, and only to train.
  new = classes_by_split(split_of_product, records)
  assert new['validation'][0] <= new['train'][0] and new['validation'][1] <= new['train'][1]
  assert all(old_split[p] == 'validation' for p, s in split_of_product.items() if s == 'validation')
  moved = {p for p, s in split_of_product.items() if s != old_split[p]}
  assert 8 <= len(moved) < 21  # The lone ones, not every candidate.

  # The same split whatever the order of the lines.
  shuffled = tmp_path / 'shuffled'
  os.makedirs(shuffled)
  os.symlink(manual / 'images', shuffled / 'images')
  lines = list(records)
  random.Random(1).shuffle(lines)
  data.write_jsonl(str(shuffled / 'catalog.jsonl'), lines)
  source = catalog.CatalogSource(
      str(shuffled), catalog.CatalogOptions(validation_fraction=LONG_TAIL_FRACTION)
  )
  again = source.read_records(SkippedRecords(strict=True))
  assert {split: sorted(r.id for r in split_records) for split, split_records in again.items()} == {
      split: sorted(i for i, _, _, _ in examples) for split, examples in written.items()
  }

  # The printed counts, checked against the examples written.
  def plural(n, one, many):
    return f'{n:,} {one if n == 1 else many}'

  parts = []
  for split, examples in written.items():
    parts.append(
        f'{split} '
        + ', '.join(
            (
                plural(len(examples), 'record', 'records'),
                plural(len({p for _, p, _, _ in examples}), 'product', 'products'),
                plural(len({c for _, _, c, _ in examples}), 'category', 'categories'),
                plural(len({s for _, _, _, s in examples}), 'sub-category', 'sub-categories'),
            )
        )
    )
  only_sub = len(new['train'][1] - new['validation'][1])
  only_main = len(new['train'][0] - new['validation'][0])
  line = (
      f'split: {"; ".join(parts)} ({plural(only_sub, "sub-category", "sub-categories")}, '
      f'{plural(only_main, "category", "categories")} only in train)'
  )
  assert line in out.splitlines(), out
  print(line)


def test_split_products_moves_only_candidates_and_keeps_a_split_that_is_fine():
  rng = random.Random(3)
  for trial in range(20):
    fraction = rng.choice((0.1, 0.3, 0.5))
    records = []
    for i in range(rng.randint(5, 60)):
      category = f'C{rng.randint(0, 3)}'
      for view in range(rng.randint(1, 3)):
        subcategory = f'S{rng.randint(0, 12 if view == 0 else 30)}'
        records.append(
            SourceRecord(
                id=f'{trial}-{i}-{view}',
                product_id=f'{trial}-{i}',
                caption='x',
                category=category,
                subcategory=subcategory,
                pose='',
                where='',
            )
        )
    split = catalog.split_products(records, fraction)
    assert sorted(r.id for s in split.values() for r in s) == sorted(r.id for r in records)
    validation_products = {r.product_id for r in split['validation']}
    train_products = {r.product_id for r in split['train']}
    assert not validation_products & train_products
    assert all(catalog._is_validation_product(p, fraction) for p in validation_products)
    for level in ('category', 'subcategory'):
      assert {getattr(r, level) for r in split['validation']} <= {
          getattr(r, level) for r in split['train']
      }
    # Where the hash split already had every validation class in train, it is kept.
    old = {
        s: [
            r
            for r in records
            if catalog._is_validation_product(r.product_id, fraction) == (s == 'validation')
        ]
        for s in ('train', 'validation')
    }
    if all(
        {getattr(r, level) for r in old['validation']} <= {getattr(r, level) for r in old['train']}
        for level in ('category', 'subcategory')
    ):
      assert split == old


def test_single_file_catalog_checks_text_and_class_file_before_splitting(tmp_path):
  manual = tmp_path / 'manual'
  data.write_images(str(manual / 'img'), {'a.png': data.images_of_every_mode()['gray.png']})
  rows = [
      data.catalog_record(i, 'img/a.png', product=i, subcategory=f'S{i % 4}') for i in range(40)
  ]
  # The lone product of sub-category LONE has an empty caption: it is no training product.
  rows.append(data.catalog_record(40, 'img/a.png', product=40, subcategory='LONE', caption=' '))
  rows.append(data.catalog_record(41, 'img/a.png', product=41, subcategory='LONE'))
  rows.append(data.catalog_record(42, 'img/a.png', product=42, subcategory='SOCKS'))
  data.write_jsonl(str(manual / 'catalog.jsonl'), rows)
  with open(manual / 'classes.json', 'w') as f:
    f.write('{"categories": ["TOPS"], "subcategories": ["S0", "S1", "S2", "S3", "LONE"]}')
  skips = SkippedRecords()
  source = catalog.CatalogSource(
      str(manual), catalog.CatalogOptions(validation_fraction=0.5, class_file='classes.json')
  )
  split = source.read_records(skips)
  assert skips.as_dict() == {'catalog': {'empty_caption': 1, 'unknown_category': 1}}
  assert [r.id for r in split['train'] if r.subcategory == 'LONE'] == ['item41']
  assert {r.subcategory for r in split['validation']} <= {r.subcategory for r in split['train']}
  assert sum(map(len, split.values())) == 41


def test_single_file_catalog_too_small_to_split_is_fatal(tmp_path):
  manual = tmp_path / 'manual'
  data.write_images(str(manual / 'img'), {'a.png': data.images_of_every_mode()['gray.png']})
  # Every product alone in its sub-category: each must train.
  rows = [data.catalog_record(i, 'img/a.png', product=i, subcategory=f'S{i}') for i in range(8)]
  data.write_jsonl(str(manual / 'catalog.jsonl'), rows)
  source = catalog.CatalogSource(str(manual), catalog.CatalogOptions(validation_fraction=0.5))
  with pytest.raises(
      PrepareError,
      match=r'catalog.jsonl: no product can go to validation '
      r'\(the \d+ candidate product\(s\) are each needed in training',
  ):
    source.read_records(SkippedRecords())


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
  data.write_bert_vocab(
      str(vocab_file),
      words=[
          'cafe',
          'shirt',
          'leather',
          'boots',
          'a',
          '.',
          'wool',
          'hat',
          'red',
          'no',
          'title',
          'here',
      ],
  )
  summary = prepare.prepare_dataset(
      'fashion_gen',
      data_dir,
      manual_dir=manual,
      tokenizer='wordpiece',
      vocab_file=str(vocab_file),
      caption_fields='title+description',
      text_length=16,
      num_workers=1,
  )
  assert summary.num_examples == {'train': 3, 'validation': 2}
  assert summary.skipped == {'train': {'empty_caption': 1}}
  assert "fashiongen_256_256_train.h5 row 3 (id '1003_0')" in summary.format()
  assert (
      'split: train 3 records, 2 products, 2 categories, 2 sub-categories; validation 2 '
      'records, 2 products, 2 categories, 2 sub-categories (1 sub-category, 1 category '
      'only in train)'
  ) in summary.format().splitlines()

  prepared = prepare.load_prepared('fashion_gen', data_dir)
  # Classes are counted over train and validation.
  assert prepared.metadata['main_categories'] == ['HATS', 'SHOES', 'TOPS']
  assert prepared.metadata['sub_categories'] == ['BEANIES', 'BOOTS', 'SHIRTS']
  assert prepared.metadata['tokenizer']['kind'] == 'wordpiece'
  assert prepared.metadata['tokenizer']['special_ids']['cls'] == 101
  examples = {
      e['id'].decode(): e for e in tfds.as_numpy(prepared.builder.as_dataset(split='train'))
  }
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
  views = list(synthetic_render.generate_catalog(3, 5, image_size=64, max_views=3))
  assert [r.id for r in records] == [v['id'] for v in views]
  for record, view in zip(records, views):
    assert (
        record.product_id,
        record.caption,
        record.category,
        record.subcategory,
        record.pose,
    ) == (
        view['product_id'],
        view['caption'],
        view['category'],
        view['subcategory'],
        str(view['pose']),
    )
  np.testing.assert_array_equal(
      records[-1].image_ref(),
      synthetic_render.render_view(
          synthetic_render.sample_product(2, 5), int(views[-1]['pose']), 5, options.image_size
      ),
  )


def test_synthetic_fashion_builds_with_workers_and_jpeg(tmp_path):
  data_dir = str(tmp_path / 'data')
  summary = prepare.prepare_dataset(
      'synthetic_fashion',
      data_dir,
      num_products=3,
      num_validation_products=2,
      max_views=2,
      vocab_size=120,
      text_length=32,
      image_size=64,
      image_encoding='jpeg',
      num_workers=2,
  )
  assert summary.num_examples['train'] >= 3 and summary.num_examples['validation'] >= 2
  assert f'split: train {summary.num_examples["train"]} records, 3 products, ' in summary.format()
  examples = list(
      tfds.as_numpy(tfds.load('synthetic_fashion', data_dir=data_dir, split='validation'))
  )
  assert len(examples) == summary.num_examples['validation']
  prepared = prepare.load_prepared('synthetic_fashion', data_dir)
  assert prepared.metadata['main_categories'] == synthetic_render.main_categories()
  assert prepared.metadata['image_encoding'] == 'jpeg'
  train_ids = {e['id'] for e in tfds.as_numpy(prepared.builder.as_dataset(split='train'))}
  for example in examples:
    assert example['image'].shape == (64, 64, 3) and example['image'].dtype == np.uint8
    assert example['image'].min() < 200  # A garment was drawn.
    assert example['id'] not in train_ids  # The validation catalog has its own seed.
    assert prepared.tokenizer.decode(example['input_ids']) in example['caption'].decode().lower()
