"""Tests of the training / evaluation input pipelines (input_pipeline.pipeline).

The fixture dataset is written in the prepared-dataset format with tiny
lossless (PNG) images whose pixels encode the record index, and captions
whose first words encode product and record, so that each batch row can be
traced back to its record.
"""

import os
import shutil

import numpy as np
import pytest

from input_pipeline import pipeline
from tests.contract_dataset import write_contract_dataset

NAME = 'contract_fixture'
NUM_TRAIN = 37  # uneven on purpose
NUM_VALIDATION = 23
VIEWS_PER_PRODUCT = 2
IMAGE_SIZE = 16
TEXT_LENGTH = 8
FIRST_WORD_ID = 1000  # see write_contract_dataset: [CLS] 1000+product 1000+record ...


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('pipeline_data'))
  write_contract_dataset(
      directory,
      NAME,
      split_sizes={'train': NUM_TRAIN, 'validation': NUM_VALIDATION},
      views_per_product=VIEWS_PER_PRODUCT,
      image_size=IMAGE_SIZE,
      text_length=TEXT_LENGTH,
      image_encoding='png',
      marked_images=True,
  )
  return directory


def record_of_image(images):
  """Record index marked in each image: uint8 [B, S, S, 3] -> int [B]."""
  return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


def train_batches(data_dir, count, **kwargs):
  options = dict(seed=3, image_size=IMAGE_SIZE, process_index=0, process_count=1)
  options.update(kwargs)
  global_batch = options.pop('global_batch_size', 8)
  iterator = pipeline.train_iterator(data_dir, NAME, 'train', global_batch, **options)
  batches = [next(iterator) for _ in range(count)]
  iterator.close()
  return batches


def test_train_batch_structure(data_dir):
  (batch,) = train_batches(data_dir, 1)
  assert set(batch) == {'images', 'input_ids', 'itm_labels', 'main_labels', 'sub_labels'}
  assert batch['images'].shape == (8, IMAGE_SIZE, IMAGE_SIZE, 3)
  assert batch['images'].dtype == np.uint8
  assert batch['input_ids'].shape == (8, TEXT_LENGTH)
  assert batch['input_ids'].dtype == np.int32
  for key in ('itm_labels', 'main_labels', 'sub_labels'):
    assert batch[key].shape == (8,) and batch[key].dtype == np.int32
  # Labels are those of the image's record (see write_contract_dataset: 4 main
  # categories x 3 sub-categories, sub-category = product % 12).
  records = record_of_image(batch['images'])
  subcategories = (records // VIEWS_PER_PRODUCT) % 12
  np.testing.assert_array_equal(batch['sub_labels'], subcategories)
  np.testing.assert_array_equal(batch['main_labels'], subcategories // 3)


def test_each_epoch_visits_distinct_records_and_reshuffles(data_dir):
  steps = pipeline.steps_per_epoch(data_dir, NAME, 'train', 8)
  assert steps == NUM_TRAIN // 8
  batches = train_batches(data_dir, 2 * steps)
  epochs = [
      np.concatenate([record_of_image(b['images']) for b in batches[e * steps : (e + 1) * steps]])
      for e in range(2)
  ]
  for order in epochs:
    assert len(set(order.tolist())) == steps * 8  # no record twice per epoch
    assert set(order.tolist()) <= set(range(NUM_TRAIN))
  assert not np.array_equal(epochs[0], epochs[1])


def test_resume_yields_the_same_batches(data_dir):
  reference = train_batches(data_dir, 11)
  resumed = train_batches(data_dir, 5, start_step=6)  # crosses an epoch end
  for expected, actual in zip(reference[6:], resumed):
    assert expected.keys() == actual.keys()
    for key in expected:
      np.testing.assert_array_equal(expected[key], actual[key])


def test_repeated_sampling_and_resume_inside_a_repeated_epoch(data_dir):
  """repeats=3 (the release's sampler): each record three times in a row within an epoch,
  each copy with its own ITM draw; resuming mid-epoch gives the same batches."""
  steps = pipeline.steps_per_epoch(data_dir, NAME, 'train', 8)  # 4: 32 of 37 entries
  reference = train_batches(data_dir, 3 * steps, repeats=3, itm_negative_prob=0.5)
  for epoch in range(3):
    batches = reference[epoch * steps : (epoch + 1) * steps]
    order = np.concatenate([record_of_image(b['images']) for b in batches])
    copies = order[:30].reshape(10, 3)
    assert np.all(copies == copies[:, :1]), order  # three copies side by side
    assert len(set(order.tolist())) == 11  # ceil(32 / 3) records per epoch
  # Copies of one record got different ITM draws somewhere over the epochs.
  labels = np.concatenate([b['itm_labels'] for b in reference])[:90].reshape(30, 3)
  captions = np.concatenate([caption_record(b['input_ids']) for b in reference])[:90]
  assert np.any(labels != labels[:, :1])
  assert np.any(captions.reshape(30, 3) != captions.reshape(30, 3)[:, :1])
  resumed = train_batches(
      data_dir, 4, start_step=steps + 2, repeats=3, itm_negative_prob=0.5
  )  # from the middle of epoch 1
  for expected, actual in zip(reference[steps + 2 :], resumed):
    for key in expected:
      np.testing.assert_array_equal(expected[key], actual[key])


def test_seed_controls_the_order(data_dir):
  first = train_batches(data_dir, 2, seed=5)
  again = train_batches(data_dir, 2, seed=5)
  other = train_batches(data_dir, 2, seed=6)
  np.testing.assert_array_equal(first[1]['images'], again[1]['images'])
  np.testing.assert_array_equal(first[1]['input_ids'], again[1]['input_ids'])
  assert not np.array_equal(first[0]['images'], other[0]['images'])


def test_parallelism_does_not_change_the_batches(data_dir):
  """tf.data's thread pool size changes speed, never which rows a step holds."""
  one = train_batches(data_dir, 5, num_workers=1, prefetch=1, itm_negative_prob=0.5)
  many = train_batches(data_dir, 5, num_workers=4, prefetch=3, itm_negative_prob=0.5)
  for expected, actual in zip(one, many):
    for key in expected:
      np.testing.assert_array_equal(expected[key], actual[key])


def test_epoch_order_matches_the_batches(data_dir):
  """`epoch_order` (numpy) is the order the training batches follow, repeats too."""
  steps = pipeline.steps_per_epoch(data_dir, NAME, 'train', 8)
  for repeats in (1, 3):
    batches = train_batches(data_dir, 2 * steps, repeats=repeats)
    for epoch in range(2):
      seen = np.concatenate(
          [record_of_image(b['images']) for b in batches[epoch * steps : (epoch + 1) * steps]]
      )
      expected = pipeline.epoch_order(3, epoch, NUM_TRAIN, repeats)[: steps * 8]
      np.testing.assert_array_equal(seen, expected)


def caption_record(input_ids):
  return input_ids[:, 2] - FIRST_WORD_ID


def caption_product(input_ids):
  return input_ids[:, 1] - FIRST_WORD_ID


def test_itm_pairs_and_labels(data_dir):
  batches = train_batches(data_dir, 8, itm_negative_prob=0.5)
  labels = np.concatenate([b['itm_labels'] for b in batches])
  image_records = np.concatenate([record_of_image(b['images']) for b in batches])
  ids = np.concatenate([b['input_ids'] for b in batches])
  same_product = caption_product(ids) == image_records // VIEWS_PER_PRODUCT
  np.testing.assert_array_equal(labels, same_product.astype(np.int32))
  swapped = caption_record(ids) != image_records
  assert 0.2 < swapped.mean() < 0.8  # about half the captions are swapped
  # A swapped caption comes from another item of the same (global) batch.
  for batch in batches:
    assert set(caption_record(batch['input_ids']).tolist()) <= set(
        record_of_image(batch['images']).tolist()
    )


@pytest.mark.parametrize('probability, expect_swapped', [(0.0, False), (1.0, True)])
def test_itm_negative_probability_extremes(data_dir, probability, expect_swapped):
  (batch,) = train_batches(data_dir, 1, itm_negative_prob=probability)
  swapped = caption_record(batch['input_ids']) != record_of_image(batch['images'])
  assert swapped.all() == expect_swapped and swapped.any() == expect_swapped
  if not expect_swapped:
    np.testing.assert_array_equal(batch['itm_labels'], 1)


def test_hard_itm_negatives_share_the_sub_category(data_dir):
  batches = train_batches(
      data_dir, 6, itm_negative_prob=1.0, itm_hard_negative_prob=1.0, global_batch_size=24
  )
  shared, swapped = 0, 0
  for batch in batches:
    image_records = record_of_image(batch['images'])
    caption_records = caption_record(batch['input_ids'])
    sub = (image_records // VIEWS_PER_PRODUCT) % 12
    caption_sub = (caption_records // VIEWS_PER_PRODUCT) % 12
    assert (caption_records != image_records).all()  # never its own caption
    for i in range(len(sub)):
      has_peer = np.sum(sub == sub[i]) > 1  # another row of its sub-category in the batch
      swapped += 1
      shared += int(caption_sub[i] == sub[i])
      if has_peer:
        assert caption_sub[i] == sub[i]
  assert shared > swapped // 4  # the option does something


def test_hard_itm_negatives_start_at_the_configured_step(data_dir):
  options = dict(itm_negative_prob=1.0, itm_hard_negative_prob=1.0, global_batch_size=24)
  late = train_batches(data_dir, 6, itm_hard_negative_from_step=3, **options)
  never = train_batches(data_dir, 3, **{**options, 'itm_hard_negative_prob': 0.0})
  always = train_batches(data_dir, 6, **options)
  for step in range(3):  # before the start: the draws of a run without hard negatives
    np.testing.assert_array_equal(late[step]['input_ids'], never[step]['input_ids'])
  for step in range(3, 6):  # from it on: those of a run with them from the start
    np.testing.assert_array_equal(late[step]['input_ids'], always[step]['input_ids'])
  assert any((always[s]['input_ids'] != never[s]['input_ids']).any() for s in range(3))


def test_hosts_split_the_global_batch(data_dir):
  (single,) = train_batches(data_dir, 1, start_step=2, global_batch_size=12)
  parts = [
      train_batches(
          data_dir, 1, start_step=2, global_batch_size=12, process_index=p, process_count=3
      )[0]
      for p in range(3)
  ]
  assert all(len(part['images']) == 4 for part in parts)
  # The same global batch, ITM pairs included, whatever the number of hosts.
  for key in ('images', 'input_ids', 'itm_labels', 'main_labels', 'sub_labels'):
    np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]), single[key])


def test_resize_to_another_image_size(data_dir):
  (batch,) = train_batches(data_dir, 1, image_size=12)
  assert batch['images'].shape == (8, 12, 12, 3)
  # Marked images are flat, and resizing keeps a flat image's value.
  records = record_of_image(batch['images'])
  np.testing.assert_array_equal(batch['images'][:, 7, 5, 0], records % 256)


def test_global_batch_must_divide_over_hosts(data_dir):
  with pytest.raises(pipeline.PipelineConfigError, match='divide evenly'):
    pipeline.train_iterator(data_dir, NAME, 'train', 10, seed=0, process_index=0, process_count=3)


def test_eval_covers_every_record_once_over_three_hosts(data_dir):
  seen = []
  for process in range(3):
    batches = list(
        pipeline.eval_iterator(
            data_dir,
            NAME,
            'validation',
            6,
            image_size=IMAGE_SIZE,
            process_index=process,
            process_count=3,
        )
    )
    assert len(batches) == -(-NUM_VALIDATION // 6)  # same count on every host
    for batch in batches:
      assert batch['images'].shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3)
      assert batch['input_ids'].shape == (2, TEXT_LENGTH)
      assert batch['valid'].dtype == bool
      records = record_of_image(batch['images'])
      valid = batch['valid']
      # An eval batch carries each record's own caption.
      np.testing.assert_array_equal(caption_record(batch['input_ids'])[valid], records[valid])
      assert (batch['images'][~valid] == 0).all()
      seen.extend(records[valid].tolist())
  assert sorted(seen) == list(range(NUM_VALIDATION))


def test_eval_without_padding(data_dir):
  batches = list(
      pipeline.eval_iterator(
          data_dir,
          NAME,
          'validation',
          10,
          image_size=IMAGE_SIZE,
          process_index=0,
          process_count=1,
          pad_to_full_batch=False,
      )
  )
  assert [len(b['images']) for b in batches] == [10, 10, 3]
  assert all(b['valid'].all() for b in batches)


def test_split_view_and_metadata(data_dir):
  metadata = pipeline.read_metadata(data_dir, NAME, 'validation')
  assert list(metadata.ids) == [f'validation_{i}' for i in range(NUM_VALIDATION)]
  assert metadata.product_ids[5] == f'validation_product_{5 // VIEWS_PER_PRODUCT}'
  assert metadata.poses[5] == 'view_1'
  view = pipeline.SplitView(data_dir, NAME, 'validation', image_size=IMAGE_SIZE, metadata=metadata)
  ids = ['validation_7', 'validation_2', 'validation_7']
  np.testing.assert_array_equal(record_of_image(view.images(ids)), [7, 2, 7])
  np.testing.assert_array_equal(caption_record(view.input_ids(ids)), [7, 2, 7])
  with pytest.raises(pipeline.PreparedDatasetError, match='no record with id'):
    view.images(['nope'])
  view.close()


def test_missing_dataset_and_split_are_named(data_dir):
  with pytest.raises(pipeline.PreparedDatasetError, match='absent_dataset'):
    pipeline.steps_per_epoch(data_dir, 'absent_dataset', 'train', 8)
  with pytest.raises(pipeline.PreparedDatasetError, match="no split 'test'"):
    pipeline.steps_per_epoch(data_dir, NAME, 'test', 8)


def test_truncated_shard_is_reported(data_dir, tmp_path):
  broken_dir = str(tmp_path / 'broken')
  shutil.copytree(data_dir, broken_dir)
  version_dir = os.path.join(broken_dir, NAME, '1.0.0')
  (shard,) = [f for f in os.listdir(version_dir) if 'train.tfrecord' in f]
  path = os.path.join(version_dir, shard)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(pipeline.PreparedDatasetError, match=shard):
    next(
        pipeline.train_iterator(
            broken_dir, NAME, 'train', 8, seed=0, process_index=0, process_count=1
        )
    )


def test_prepared_synthetic_dataset(tmp_path):
  """Integration: the real `prepare` output (raw-byte images) feeds the pipeline."""
  prepare = pytest.importorskip('input_pipeline.prepare')
  from input_pipeline import retrieval_sets  # pylint: disable=g-import-not-at-top

  data_dir = str(tmp_path)
  prepare.prepare_dataset(
      'synthetic_fashion',
      data_dir,
      num_products=24,
      num_validation_products=10,
      image_size=32,
      text_length=16,
      vocab_size=100,
  )
  name = 'synthetic_fashion'
  tokenizer = prepare.load_prepared(name, data_dir).tokenizer
  iterator = pipeline.train_iterator(
      data_dir, name, 'train', 8, seed=0, image_size=32, process_index=0, process_count=1
  )
  batch = next(iterator)
  iterator.close()
  assert batch['images'].shape == (8, 32, 32, 3)
  assert batch['images'].std() > 0  # real pictures, not zeros
  assert (batch['input_ids'][:, 0] == tokenizer.cls_id).all()
  assert batch['input_ids'].max() < tokenizer.vocab_size
  batches = list(
      pipeline.eval_iterator(
          data_dir, name, 'validation', 8, image_size=32, process_index=0, process_count=1
      )
  )
  total = pipeline.num_examples(data_dir, name, 'validation')
  assert sum(int(b['valid'].sum()) for b in batches) == total
  metadata = pipeline.read_metadata(data_dir, name, 'validation')
  records = retrieval_sets.records_from_metadata(metadata)
  sets = retrieval_sets.build_retrieval_sets(
      records, num_queries=2, num_candidates=2, seed=0, dataset=name, split='validation'
  )
  view = pipeline.SplitView(data_dir, name, 'validation', image_size=32, metadata=metadata)
  pairs, _ = list(retrieval_sets.candidate_batches(sets, view, 'tir'))
  assert pairs['images'].shape == (2, 32, 32, 3)
  assert pairs['input_ids'].shape == (2, 16)
  view.close()


def _train_shard(directory):
  version_dir = os.path.join(directory, NAME, '1.0.0')
  (shard,) = [f for f in os.listdir(version_dir) if 'train.tfrecord' in f]
  return os.path.join(version_dir, shard)


def _rewrite_record(data_dir, tmp_path, index, change):
  """A copy of the fixture whose train record `index` is `change(bytes)`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  broken_dir = str(tmp_path / 'broken')
  shutil.copytree(data_dir, broken_dir)
  path = _train_shard(broken_dir)
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  records[index] = change(records[index])
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
  return broken_dir


@pytest.mark.parametrize(
    'problem, message',
    [
        ('short_input_ids', r'record 5 \(.*train.tfrecord.*\): .*input_ids'),
        ('missing_category', r'record 5 \(.*train.tfrecord.*\): .*category'),
    ],
)
def test_malformed_record_is_named(data_dir, tmp_path, problem, message):
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top

  def change(serialized):
    example = example_pb2.Example.FromString(serialized)
    feature = example.features.feature
    if problem == 'short_input_ids':
      del feature[pipeline.INPUT_IDS_KEY].int64_list.value[2:]
    else:
      del feature[pipeline.CATEGORY_KEY]
    return example.SerializeToString()

  broken_dir = _rewrite_record(data_dir, tmp_path, 5, change)
  iterator = pipeline.eval_iterator(
      broken_dir, NAME, 'train', 4, image_size=IMAGE_SIZE, process_index=0, process_count=1
  )
  next(iterator)  # records 0-3 are fine
  with pytest.raises(pipeline.PreparedDatasetError, match=message):
    next(iterator)
  # Training reads the same record at some step of the first epoch.
  with pytest.raises(pipeline.PreparedDatasetError, match=message):
    train_batches(broken_dir, pipeline.steps_per_epoch(broken_dir, NAME, 'train', 8) + 1)


def _flip_byte(data_dir, tmp_path, index):
  """A copy of the fixture with one byte of train record `index`'s data flipped."""
  broken_dir = str(tmp_path / 'flipped')
  shutil.copytree(data_dir, broken_dir)
  path = _train_shard(broken_dir)
  locations = pipeline.record_locations(pipeline.open_split(broken_dir, NAME, 'train'))
  with open(path, 'r+b') as f:
    position = int(locations.offset[index]) + 20  # inside the record's data
    f.seek(position)
    byte = f.read(1)
    f.seek(position)
    f.write(bytes([byte[0] ^ 0xFF]))
  return broken_dir


def test_corrupted_record_bytes_are_named(data_dir, tmp_path):
  """A flipped byte fails the TFRecord CRC check; the record is named."""
  broken_dir = _flip_byte(data_dir, tmp_path, 7)
  with pytest.raises(
      pipeline.PreparedDatasetError, match=r'record 7 \(.*\): .*(corrupt|CRC|checksum)'
  ):
    list(
        pipeline.eval_iterator(
            broken_dir, NAME, 'train', 8, image_size=IMAGE_SIZE, process_index=0, process_count=1
        )
    )


def test_resume_reads_nothing_before_its_step(data_dir, tmp_path):
  """A record only step 0 reads is corrupted: resuming at step 1 never touches it."""
  order = pipeline.epoch_order(3, 0, NUM_TRAIN)  # train_batches' seed
  target = int(order[0])  # read at step 0 only, within the first epoch
  broken_dir = _flip_byte(data_dir, tmp_path, target)
  resumed = train_batches(broken_dir, 3, start_step=1)  # steps 1-3: the rest of epoch 0
  assert target not in np.concatenate([record_of_image(b['images']) for b in resumed])
  with pytest.raises(pipeline.PreparedDatasetError, match=rf'record {target} '):
    train_batches(broken_dir, 1)


def test_array_record_datasets_are_refused_with_the_way_out(tmp_path):
  data_dir = str(tmp_path)
  write_contract_dataset(
      data_dir,
      NAME,
      split_sizes={'train': 4},
      image_size=8,
      text_length=TEXT_LENGTH,
      image_encoding='png',
      marked_images=True,
      file_format='array_record',
  )
  with pytest.raises(
      pipeline.PreparedDatasetError, match='stored as array_record.*prepare the dataset again'
  ):
    pipeline.eval_iterator(data_dir, NAME, 'train', 4, process_index=0, process_count=1)


ATTRIBUTE_CLASSES = (5, 3)


@pytest.fixture(scope='module')
def attribute_data_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('pipeline_attribute_data'))
  write_contract_dataset(
      directory,
      NAME,
      split_sizes={'train': NUM_TRAIN, 'validation': NUM_VALIDATION},
      views_per_product=VIEWS_PER_PRODUCT,
      image_size=IMAGE_SIZE,
      text_length=TEXT_LENGTH,
      image_encoding='png',
      marked_images=True,
      attribute_classes=ATTRIBUTE_CLASSES,
  )
  return directory


def product_attributes(products):
  """The fixture's attributes of each product: int [N] -> int [N, K]."""
  return np.stack([(products + k) % n for k, n in enumerate(ATTRIBUTE_CLASSES)], axis=1)


def test_attribute_labels_follow_image_and_caption(attribute_data_dir):
  batches = train_batches(attribute_data_dir, 6, itm_negative_prob=0.5, attribute_labels=True)
  swapped_rows = 0
  for batch in batches:
    image_products = record_of_image(batch['images']) // VIEWS_PER_PRODUCT
    caption_products = caption_product(batch['input_ids'])
    np.testing.assert_array_equal(
        batch['image_attribute_labels'], product_attributes(image_products)
    )
    np.testing.assert_array_equal(
        batch['caption_attribute_labels'], product_attributes(caption_products)
    )
    assert batch['caption_attribute_labels'].dtype == np.int32
    swapped_rows += int(np.sum(caption_products != image_products))
  assert swapped_rows > 0  # negatives were drawn, and their labels are the partner's


def test_attribute_labels_are_off_by_default(attribute_data_dir):
  (batch,) = train_batches(attribute_data_dir, 1)
  assert 'caption_attribute_labels' not in batch and 'image_attribute_labels' not in batch


def test_attribute_labels_need_the_feature(data_dir):
  with pytest.raises(pipeline.PipelineConfigError, match='no attribute labels'):
    pipeline.train_iterator(
        data_dir, NAME, 'train', 8, seed=0, attribute_labels=True, process_index=0, process_count=1
    )


def test_throughput_command_measures_and_names_a_missing_dataset(data_dir):
  """`python -m input_pipeline.throughput` prints one JSON line, or one `error:` line."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  command = [
      sys.executable,
      '-m',
      'input_pipeline.throughput',
      f'--data_dir={data_dir}',
      f'--name={NAME}',
      '--batch_size=8',
      '--steps=2',
      '--warmup_steps=1',
      f'--image_size={IMAGE_SIZE}',
  ]
  result = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  figures = json.loads(result.stdout.strip().splitlines()[-1])
  assert figures['batch_size'] == 8 and figures['steps'] == 2
  assert figures['text_length'] == TEXT_LENGTH and figures['examples_per_s'] > 0
  missing = subprocess.run(
      command[:3] + [f'--data_dir={data_dir}/absent'],
      cwd=repo,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert missing.returncode != 0
  assert missing.stderr.strip().splitlines()[-1].startswith('error: No prepared dataset')
