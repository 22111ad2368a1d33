"""Training and evaluation input pipelines: tf.data over a prepared TFDS split.

Design
------
The pipelines deliver raw inputs only (MLM word masking and grid image masking
happen on device, in `mvlt_jax.masking`). Every batch is a pure function of
its step, and every one comes out of a `tf.data.Dataset`:

* **Random access.** A split is the TFRecord shards TFDS wrote. When a
  pipeline is built, the byte offset of every record is found once by reading
  the 12-byte record headers (`record_locations`: no record data is read).
  Record ``i`` is then read inside the graph by TensorFlow's own TFRecord
  reader started at that offset (``TFRecordDatasetV2`` with ``byte_offsets``:
  CRCs checked), parsed by ``tf.io.parse_single_example`` and its image
  decoded (raw bytes or PNG/JPEG) and resized, all in one parallel ``map``.
* **Order.** Epoch ``e`` visits the records in the order of a stateless index
  shuffle keyed by ``(seed, e)`` (``tf.random.experimental.index_shuffle``,
  computed in the graph, no permutation array); with repeated sampling each
  entry is repeated ``k`` times and the list cut to N (`epoch_order`). Step
  ``s`` is global batch ``pos`` of epoch ``e`` with
  ``e, pos = divmod(s, steps_per_epoch)``; host ``p`` reads rows
  ``[p * B, (p + 1) * B)`` of it. Resuming at step ``k`` starts the step
  counter at ``k``: no record before it is read.
* **ITM pairs** are drawn over the GLOBAL batch from stateless draws keyed by
  ``(seed, step)`` (the same on every host): with probability
  ``itm_negative_prob`` a row gets the caption of another row of the global
  batch (uniformly, never itself; optionally one of the same sub-category).
  A partner held by this host is taken from the batch itself; only a partner
  held by another host is read (its text fields) from disk.
* **Parallelism** is tf.data's: the record map runs with ``AUTOTUNE``
  parallelism and keeps the row order (``deterministic``), batches are
  prefetched, ``num_workers`` caps tf.data's private thread pool. There is no
  Python in the per-record path.

Batches are dicts of numpy arrays:

* training: ``images`` uint8 [B, S, S, 3], ``input_ids`` int32 [B, L],
  ``itm_labels`` int32 [B] (1 = matched), ``main_labels`` / ``sub_labels``
  int32 [B];
* evaluation: ``images``, ``input_ids`` (the item's own caption),
  ``main_labels``, ``sub_labels`` and ``valid`` bool [B] (False on the rows
  that pad the last batch to full size).

B is the per-host batch, ``global_batch_size // process_count``. The
`tf.data.Dataset`s themselves are `train_dataset` and `eval_dataset`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import struct
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import errors
from input_pipeline import schema

# Names of the features of a prepared dataset (the on-disk contract, named in
# input_pipeline.schema).
ID_KEY = schema.ID
PRODUCT_ID_KEY = schema.PRODUCT_ID
IMAGE_KEY = schema.IMAGE
CAPTION_KEY = schema.CAPTION
INPUT_IDS_KEY = schema.INPUT_IDS
CATEGORY_KEY = schema.CATEGORY
SUBCATEGORY_KEY = schema.SUBCATEGORY
POSE_KEY = schema.POSE
ATTRIBUTES_KEY = schema.ATTRIBUTES  # optional: int32 [K]
REQUIRED_FEATURES = schema.REQUIRED_FEATURES

# Defaults; the training / evaluation configs pass their own values.
DEFAULT_IMAGE_SIZE = 256
DEFAULT_ITM_NEGATIVE_PROB = 0.5
DEFAULT_PREFETCH = 4
METADATA_CHUNK = 1024  # records parsed per step when reading a split's metadata

# Independent random streams derived from the user seed.
_PERMUTATION_STREAM = 0
_ITM_STREAM = 1

_TFRECORD_HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
_TFRECORD_FOOTER_BYTES = 4  # uint32 masked CRC of the data


class PipelineError(errors.PrepareError):
  """Base class of the errors of the tf.data side of the input pipeline."""


class PreparedDatasetError(PipelineError):
  """The prepared dataset on disk is missing, malformed or not as expected."""


class PipelineConfigError(PipelineError, ValueError):
  """The pipeline was asked for something inconsistent (batch sizes, ...)."""


# --------------------------------------------------------------------------
# The prepared split: where its records are.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
  """Where the records of one split of a prepared dataset live."""

  name: str
  split: str
  dataset_dir: str
  features: tfds.features.FeaturesDict
  filepaths: tuple[str, ...]
  shard_lengths: tuple[int, ...]

  @property
  def num_examples(self) -> int:
    return sum(self.shard_lengths)

  @property
  def description(self) -> str:
    return f'{self.dataset_dir} split {self.split!r}'


def open_split(data_dir: str, name: str, split: str) -> PreparedSplit:
  """Locates one split of a prepared TFDS dataset and checks its features."""
  data_dir = os.fspath(data_dir)
  how_to_prepare = (
      f'Prepare it with `python -m input_pipeline.prepare {name} ' f'--data_dir={data_dir}`.'
  )
  if not os.path.isdir(os.path.join(data_dir, name)):
    raise PreparedDatasetError(f'No prepared dataset {name!r} under {data_dir}. {how_to_prepare}')
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types for a missing dataset.
    reason = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
    raise PreparedDatasetError(
        f'Cannot open dataset {name!r} under {data_dir}: {reason} ' f'{how_to_prepare}'
    ) from e
  if not builder.is_prepared():
    raise PreparedDatasetError(
        f'Dataset {name!r} is not prepared under {data_dir}. {how_to_prepare}'
    )
  dataset_dir = os.fspath(builder.data_dir)
  file_format = builder.info.file_format
  file_format = str(getattr(file_format, 'value', file_format) or 'tfrecord')
  if file_format != 'tfrecord':
    raise PreparedDatasetError(
        f'{dataset_dir}: the records are stored as {file_format}; the input pipeline '
        'reads the TFRecord shards that `prepare` writes. Remove that folder and '
        f'prepare the dataset again: `python -m input_pipeline.prepare {name} '
        f'--data_dir={data_dir}`.'
    )
  splits = builder.info.splits
  if split not in splits:
    raise PreparedDatasetError(f'{dataset_dir}: no split {split!r}; available: {sorted(splits)}.')
  split_info = splits[split]
  if not hasattr(split_info, 'shard_lengths') or '[' in split:
    raise PipelineConfigError(f'Split {split!r}: only whole splits are supported, not slices.')
  features = builder.info.features
  _check_features(features, dataset_dir)
  filepaths = tuple(os.fspath(p) for p in split_info.filepaths)
  for path in filepaths:
    if '://' in path:
      raise PreparedDatasetError(
          f'{path}: the record index is read from a local file system; copy the '
          'prepared dataset to a local disk.'
      )
  return PreparedSplit(
      name=name,
      split=split,
      dataset_dir=dataset_dir,
      features=features,
      filepaths=filepaths,
      shard_lengths=tuple(int(n) for n in split_info.shard_lengths),
  )


def _check_features(features: tfds.features.FeaturesDict, dataset_dir: str) -> None:
  missing = [k for k in REQUIRED_FEATURES if k not in features]
  if missing:
    raise PreparedDatasetError(
        f'{dataset_dir}: features {missing} are missing; the dataset has '
        f'{sorted(features.keys())}.'
    )
  image_shape = features[IMAGE_KEY].shape
  if len(image_shape) != 3 or image_shape[-1] != 3 or None in image_shape:
    raise PreparedDatasetError(
        f'{dataset_dir}: feature {IMAGE_KEY!r} must be an RGB image '
        f'of static shape [H, W, 3], found shape {image_shape}.'
    )
  ids_shape = features[INPUT_IDS_KEY].shape
  if len(ids_shape) != 1 or ids_shape[0] is None:
    raise PreparedDatasetError(
        f'{dataset_dir}: feature {INPUT_IDS_KEY!r} must have the static shape '
        f'[text_length], found {ids_shape}.'
    )


@dataclasses.dataclass(frozen=True)
class RecordLocations:
  """Where every record of a split starts: numpy arrays of length N."""

  shard: np.ndarray  # int32 [N] index into PreparedSplit.filepaths
  offset: np.ndarray  # int64 [N] byte offset of the record's header in its shard
  size: np.ndarray  # int64 [N] bytes of the record with its header and footer

  def __len__(self) -> int:
    return len(self.offset)


def record_locations(prepared: PreparedSplit) -> RecordLocations:
  """Finds the records of `prepared` by walking the TFRecord headers.

  Reads 12 bytes per record (the length and its CRC), no record data; about
  3.5 us per record, once per pipeline. Every shard must hold the number of
  records the dataset info says.
  """
  shards, offsets, sizes = [np.zeros(0, np.int32)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
  for shard, (path, expected) in enumerate(zip(prepared.filepaths, prepared.shard_lengths)):
    try:
      shard_offsets, shard_sizes = _scan_tfrecord_file(path)
    except OSError as e:
      raise PreparedDatasetError(f'{path}: cannot read: {e.strerror}.') from e
    if len(shard_offsets) != expected:
      raise PreparedDatasetError(
          f'{path}: holds {len(shard_offsets)} records but the dataset info says '
          f'{expected}; the dataset is corrupt or was only partly written: '
          'prepare it again.'
      )
    shards.append(np.full(len(shard_offsets), shard, np.int32))
    offsets.append(np.asarray(shard_offsets, np.int64))
    sizes.append(np.asarray(shard_sizes, np.int64))
  return RecordLocations(
      shard=np.concatenate(shards), offset=np.concatenate(offsets), size=np.concatenate(sizes)
  )


def _scan_tfrecord_file(path: str) -> tuple[list[int], list[int]]:
  """The byte offsets (of their headers) and sizes of the records of one TFRecord file."""
  offsets, sizes = [], []
  with open(path, 'rb', buffering=0) as f:
    file_size = os.fstat(f.fileno()).st_size
    position = 0
    while position < file_size:
      header = os.pread(f.fileno(), _TFRECORD_HEADER_BYTES, position)
      if len(header) != _TFRECORD_HEADER_BYTES:
        raise PreparedDatasetError(f'{path}: truncated record header at byte {position}.')
      (length,) = struct.unpack('<Q', header[:8])
      offsets.append(position)
      sizes.append(_TFRECORD_HEADER_BYTES + length + _TFRECORD_FOOTER_BYTES)
      position += sizes[-1]
      if position > file_size:
        raise PreparedDatasetError(
            f'{path}: record {len(offsets) - 1} claims {length} bytes, beyond the '
            f'end of the file ({file_size} bytes); not a TFRecord file or truncated.'
        )
  return offsets, sizes


# --------------------------------------------------------------------------
# Reading and decoding records inside the graph.
# --------------------------------------------------------------------------


def _parse_spec(feature: tfds.features.FeatureConnector, key: str) -> tf.io.FixedLenFeature:
  """How `feature` is stored in a `tf.train.Example`."""
  info = feature.get_serialized_info()
  if not isinstance(info, tfds.features.TensorInfo) or None in info.shape:
    raise PreparedDatasetError(f'feature {key!r}: only fixed-shape features are supported here.')
  dtype = np.dtype(info.np_dtype)
  if dtype.kind in 'SOU':
    tf_dtype = tf.string
  elif dtype.kind in 'iub':
    tf_dtype = tf.int64
  else:
    tf_dtype = tf.float32
  return tf.io.FixedLenFeature(tuple(info.shape), tf_dtype)


def _is_raw_bytes_tensor(feature: tfds.features.FeatureConnector) -> bool:
  """Whether `feature` is a uint8 Tensor stored as its raw bytes."""
  return (
      isinstance(feature, tfds.features.Tensor)
      and not isinstance(feature, tfds.features.Image)
      and feature.to_json_content().encoding == 'bytes'
      and feature.np_dtype == np.uint8
  )


class SplitReader:
  """Reads and decodes records of one split by index, as TensorFlow ops.

  The functions below are traced into tf.data maps (or run eagerly to name a
  bad record). Integer features come out as int32, text as tf.string, images
  as uint8 [S, S, 3] (bilinear resize, half-pixel centres, no antialiasing,
  rounded, when the stored size differs from `image_size`).
  """

  def __init__(self, prepared: PreparedSplit, *, image_size: int = DEFAULT_IMAGE_SIZE):
    self.prepared = prepared
    self.image_size = image_size
    self.locations = record_locations(prepared)
    self.num_examples = len(self.locations)
    self._paths = tf.constant(prepared.filepaths, tf.string)  # [num_shards]
    self._shard = tf.constant(self.locations.shard)  # [N]
    self._offset = tf.constant(self.locations.offset)  # [N]
    self._size = tf.constant(self.locations.size)  # [N]
    features = prepared.features
    self._specs = {
        key: _parse_spec(features[key], key) for key in features.keys() if key != CAPTION_KEY
    }
    image = features[IMAGE_KEY]
    self._stored_shape = tuple(image.shape)  # (H, W, 3)
    self._raw_image = _is_raw_bytes_tensor(image)
    if not self._raw_image and not isinstance(image, tfds.features.Image):
      raise PreparedDatasetError(
          f'{prepared.description}: feature {IMAGE_KEY!r} is a {type(image).__name__}; '
          'expected an Image or a uint8 Tensor stored as bytes.'
      )
    self._image_feature = image

  @property
  def features(self) -> tfds.features.FeaturesDict:
    return self.prepared.features

  def serialized(self, index: tf.Tensor) -> tf.Tensor:
    """The serialized record `index` (scalar int64) -> scalar tf.string."""
    path = tf.gather(self._paths, tf.gather(self._shard, index))
    offset = tf.gather(self._offset, index)
    variant = tf.raw_ops.TFRecordDatasetV2(
        filenames=path[None],
        compression_type='',
        buffer_size=tf.gather(self._size, index),
        byte_offsets=offset[None],
    )  # one read
    records = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.string))
    return records.take(1).get_single_element()

  def parse(self, serialized: tf.Tensor, keys: Sequence[str]) -> dict[str, tf.Tensor]:
    """Features `keys` of one serialized record, decoded."""
    parsed = tf.io.parse_single_example(serialized, {k: self._specs[k] for k in keys})
    out = {}
    for key in keys:
      value = parsed[key]
      if key == IMAGE_KEY:
        value = self._decode_image(value)
      elif value.dtype == tf.int64:
        value = tf.cast(value, tf.int32)
      out[key] = value
    return out

  def read(self, index: tf.Tensor, keys: Sequence[str]) -> dict[str, tf.Tensor]:
    return self.parse(self.serialized(index), keys)

  def zeros(self, keys: Sequence[str]) -> dict[str, tf.Tensor]:
    """What `read` returns, filled with zeros (padding rows)."""
    out = {}
    for key in keys:
      if key == IMAGE_KEY:
        out[key] = tf.zeros([self.image_size, self.image_size, 3], tf.uint8)
      else:
        spec = self._specs[key]
        dtype = tf.int32 if spec.dtype == tf.int64 else spec.dtype
        out[key] = tf.zeros(spec.shape, dtype)
    return out

  def _decode_image(self, stored: tf.Tensor) -> tf.Tensor:  # -> uint8 [S, S, 3]
    height, width, _ = self._stored_shape
    if self._raw_image:
      image = tf.reshape(tf.io.decode_raw(stored, tf.uint8), [height, width, 3])
    else:
      image = tf.ensure_shape(self._image_feature.decode_example(stored), [height, width, 3])
    size = self.image_size
    if (height, width) == (size, size):
      return image
    image = tf.image.resize(image, [size, size], method='bilinear')
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

  def check_record(self, index: int, keys: Sequence[str]) -> str | None:
    """Why record `index` cannot be read and decoded (None if it can)."""
    try:
      self.read(tf.constant(index, tf.int64), keys)
    except tf.errors.OpError as e:
      return _first_line(e.message)
    return None

  def shard_of(self, index: int) -> str:
    return self.prepared.filepaths[int(self.locations.shard[index])]


def _first_line(message: str) -> str:
  """The reason in a TensorFlow error message, without the op and function names."""
  message = re.sub(r'\{\{function_node [^}]*\}\}', '', message)
  lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
  line = lines[0] if lines else 'unknown error'
  return re.sub(r'\s*\[Op:[^\]]*\].*$', '', line)


def _pipeline_options(num_workers: int | None) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1  # parallel over records, not inside ops
  if num_workers:
    options.threading.private_threadpool_size = num_workers
  return options


@functools.cache
def _keep_tensorflow_off_accelerators() -> None:
  """TensorFlow only feeds the host: it must not take GPU memory from JAX (once per process)."""
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # TensorFlow already ran ops; its devices are fixed.
    pass


# --------------------------------------------------------------------------
# Order, ITM draws (stateless, in the graph).
# --------------------------------------------------------------------------


def _stream_seed(seed: int, stream: int, counter: tf.Tensor) -> tf.Tensor:
  """The int64 [2] seed of `counter` (an epoch or a step) in `stream`."""
  base = tf.constant([seed, stream], tf.int64)
  return tf.cast(
      tf.random.experimental.stateless_fold_in(base, tf.cast(counter, tf.int64)), tf.int64
  )


def epoch_records(
    seed: int, epoch: tf.Tensor, positions: tf.Tensor, num_examples: int, repeats: int = 1
) -> tf.Tensor:
  """Records at `positions` (int64 [n]) of epoch `epoch`'s order: int64 [n].

  The order is a stateless index shuffle of the N records keyed by
  `(seed, epoch)`; with `repeats` k > 1, position r holds the shuffle's entry
  r // k (each record k times in a row: the release's repeated-augmentation
  sampler, timm/DeiT `RASampler`), so an epoch of N positions covers about
  N / k distinct records.
  """
  shuffle_seed = _stream_seed(seed, _PERMUTATION_STREAM, epoch)
  return tf.random.experimental.index_shuffle(
      tf.cast(positions, tf.int64) // repeats, shuffle_seed, num_examples - 1
  )


def epoch_order(seed: int, epoch: int, num_examples: int, repeats: int = 1) -> np.ndarray:
  """The records epoch `epoch` visits, in order: int64 [N] (see `epoch_records`).

  The copies of a record under repeated sampling fall in the same global batch
  (as the release's do over its GPUs: its global batch is a contiguous slice
  of the same repeated list) and differ by their word mask, grid mask and ITM
  draw, which are drawn per row.
  """
  if repeats < 1:
    raise PipelineConfigError(f'repeats must be >= 1, got {repeats}.')
  positions = tf.range(num_examples, dtype=tf.int64)
  return epoch_records(seed, tf.constant(epoch, tf.int64), positions, num_examples, repeats).numpy()


def _check_itm_batch(global_batch_size: int) -> None:
  if global_batch_size < 2:
    raise PipelineConfigError(
        'ITM negatives are drawn from the global batch, which must hold at '
        f'least 2 items (got {global_batch_size}).'
    )


def itm_partners(
    seed: int,
    step: tf.Tensor,
    global_batch_size: int,
    *,
    negative_prob: float,
    hard_negative_prob: tf.Tensor | float = 0.0,
    subcategories: tf.Tensor | None = None,
) -> tf.Tensor:
  """Positions in the GLOBAL batch whose captions its rows are fed with: int64 [G].

  The draws are keyed by `(seed, step)` only, so every host forms the same
  pairs whatever the number of hosts. A row gets its own caption, or with
  probability `negative_prob` the caption of another row drawn uniformly (never
  itself). With `hard_negative_prob`, a negative is instead drawn among the
  other rows of the same sub-category (when the global batch has any): a harder
  negative that only attributes (colour, pattern, length...) tell apart.
  `subcategories` (int [G]) is needed when `hard_negative_prob` may be > 0.
  """
  _check_itm_batch(global_batch_size)
  size = global_batch_size
  draws = tf.random.experimental.stateless_split(_stream_seed(seed, _ITM_STREAM, step), 4)
  positions = tf.range(size, dtype=tf.int64)
  negative = tf.random.stateless_uniform([size], draws[0]) < negative_prob  # [G]
  offset = tf.random.stateless_uniform(
      [size], draws[1], minval=1, maxval=size, dtype=tf.int64
  )  # [G]
  partner = (positions + offset) % size  # [G]
  if subcategories is not None:
    hard = tf.random.stateless_uniform([size], draws[2]) < hard_negative_prob  # [G]
    pick = tf.random.stateless_uniform([size], draws[3])  # [G] choice among the same
    same = tf.logical_and(
        tf.equal(subcategories[:, None], subcategories[None, :]),
        tf.logical_not(tf.eye(size, dtype=tf.bool)),
    )  # [G, G]
    count = tf.reduce_sum(tf.cast(same, tf.int64), axis=1)  # [G]
    chosen = tf.cast(tf.floor(pick * tf.cast(count, tf.float32)), tf.int64)  # [G]
    seen = tf.cumsum(tf.cast(same, tf.int64), axis=1)  # [G, G]
    hard_partner = tf.argmax(
        tf.cast(seen > chosen[:, None], tf.int32), axis=1, output_type=tf.int64
    )  # first same-sub-category row past `chosen`
    partner = tf.where(hard & (count > 0), hard_partner, partner)
  return tf.where(negative, partner, positions)


# --------------------------------------------------------------------------
# Shared helpers.
# --------------------------------------------------------------------------


def _process_topology(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise PipelineConfigError(f'process_index {process_index} is outside [0, {process_count}).')
  return process_index, process_count


def local_batch_size(global_batch_size: int, process_count: int) -> int:
  """The per-host batch; the global batch must split evenly over hosts."""
  if global_batch_size <= 0:
    raise PipelineConfigError(f'global_batch_size must be positive, got {global_batch_size}.')
  if global_batch_size % process_count:
    raise PipelineConfigError(
        f'global_batch_size {global_batch_size} does not divide evenly over '
        f'{process_count} processes; choose a multiple of {process_count}.'
    )
  return global_batch_size // process_count


def _as_str(value: Any) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


class _Batches:
  """Numpy batches of a tf.data pipeline; a failed read names its record.

  `rows_of(k)` gives the record indices the k-th batch reads (for the message
  when TensorFlow reports an error: those records are checked one by one).
  """

  def __init__(
      self,
      dataset: tf.data.Dataset,
      reader: SplitReader,
      rows_of: Callable[[int], np.ndarray],
      keys: Sequence[str],
      finish: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] = lambda b: b,
  ):
    self._iterator = iter(dataset)
    self._reader = reader
    self._rows_of = rows_of
    self._keys = tuple(keys)
    self._finish = finish
    self._count = 0

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      raise StopIteration
    try:
      batch = next(self._iterator)
    except tf.errors.OpError as e:
      raise self._describe(e) from None
    self._count += 1
    return self._finish({key: value.numpy() for key, value in batch.items()})

  def _describe(self, error: tf.errors.OpError) -> PreparedDatasetError:
    description = self._reader.prepared.description
    for index in self._rows_of(self._count):
      reason = self._reader.check_record(int(index), self._keys)
      if reason is not None:
        return PreparedDatasetError(
            f'{description}: record {int(index)} ({self._reader.shard_of(int(index))}): '
            f'{reason}'
        )
    return PreparedDatasetError(
        f'{description}: cannot read batch {self._count}: {_first_line(error.message)}'
    )

  def close(self) -> None:
    self._iterator = None


# --------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------


def num_examples(data_dir: str, name: str, split: str) -> int:
  """Number of records in a split of a prepared dataset."""
  return open_split(os.fspath(data_dir), name, split).num_examples


def steps_per_epoch(data_dir: str, name: str, split: str, global_batch_size: int) -> int:
  """Training steps per epoch (global batches; the remainder is dropped)."""
  if global_batch_size <= 0:
    raise PipelineConfigError(f'global_batch_size must be positive, got {global_batch_size}.')
  return num_examples(data_dir, name, split) // global_batch_size


_TRAIN_KEYS = (IMAGE_KEY, INPUT_IDS_KEY, CATEGORY_KEY, SUBCATEGORY_KEY, PRODUCT_ID_KEY)
_PARTNER_KEYS = (INPUT_IDS_KEY, PRODUCT_ID_KEY)  # what a caption partner gives


@dataclasses.dataclass(frozen=True)
class TrainPlan:
  """What a training pipeline reads at each step (all host-independent but `rows`)."""

  reader: SplitReader
  seed: int
  global_batch_size: int
  local_batch_size: int
  process_index: int
  steps_per_epoch: int
  repeats: int
  itm_negative_prob: float
  itm_hard_negative_prob: float
  itm_hard_negative_from_step: int
  subcategories: np.ndarray | None  # int32 [N] for hard negatives

  def step_rows(self, step: tf.Tensor) -> dict[str, tf.Tensor]:
    """This host's rows of global batch `step`: dict of [B] tensors."""
    size, batch = self.global_batch_size, self.local_batch_size
    epoch, position = step // self.steps_per_epoch, step % self.steps_per_epoch
    positions = position * size + tf.range(size, dtype=tf.int64)  # [G]
    records = epoch_records(
        self.seed, epoch, positions, self.reader.num_examples, self.repeats
    )  # [G]
    hard_prob = tf.where(step >= self.itm_hard_negative_from_step, self.itm_hard_negative_prob, 0.0)
    subcategories = (
        None if self.subcategories is None else tf.gather(tf.constant(self.subcategories), records)
    )  # [G]
    partners = itm_partners(
        self.seed,
        step,
        size,
        negative_prob=self.itm_negative_prob,
        hard_negative_prob=hard_prob,
        subcategories=subcategories,
    )  # [G]
    first = self.process_index * batch
    partner = partners[first : first + batch]  # [B] positions in the global batch
    local = (partner >= first) & (partner < first + batch)
    return {
        'record': records[first : first + batch],
        'partner_record': tf.gather(records, partner),
        'partner_row': tf.where(local, partner - first, 0),
        'partner_remote': tf.logical_not(local),
    }

  def records_of_step(self, step: int) -> np.ndarray:
    rows = self.step_rows(tf.constant(step, tf.int64))
    remote = rows['partner_remote'].numpy()
    return np.concatenate([rows['record'].numpy(), rows['partner_record'].numpy()[remote]])


def train_dataset(
    plan: TrainPlan,
    *,
    start_step: int = 0,
    attribute_labels: bool = False,
    prefetch: int = DEFAULT_PREFETCH,
    num_workers: int | None = None,
) -> tf.data.Dataset:
  """The endless tf.data pipeline of `plan` from step `start_step` on."""
  reader = plan.reader
  extra = (ATTRIBUTES_KEY,) if attribute_labels else ()
  own_keys, partner_keys = _TRAIN_KEYS + extra, _PARTNER_KEYS + extra

  single_host = plan.local_batch_size == plan.global_batch_size  # no partner elsewhere

  def read_row(row):
    example = reader.read(row['record'], own_keys)
    in_batch = lambda: {k: example[k] for k in partner_keys}
    partner = (
        in_batch()
        if single_host
        else tf.cond(
            row['partner_remote'],
            lambda: reader.read(row['partner_record'], partner_keys),
            in_batch,
        )
    )
    return {
        'example': example,
        'partner': partner,
        'partner_row': row['partner_row'],
        'partner_remote': row['partner_remote'],
    }

  def assemble(rows):  # rows of one step, batched: [B, ...]
    example, partner, remote = rows['example'], rows['partner'], rows['partner_remote']

    def paired(key):  # the partner's `key`: from this batch or read from disk
      in_batch = tf.gather(example[key], rows['partner_row'])
      mask = tf.reshape(remote, [-1] + [1] * (len(in_batch.shape) - 1))
      return tf.where(mask, partner[key], in_batch)

    out = {
        'images': example[IMAGE_KEY],
        'input_ids': paired(INPUT_IDS_KEY),
        'itm_labels': tf.cast(tf.equal(paired(PRODUCT_ID_KEY), example[PRODUCT_ID_KEY]), tf.int32),
        'main_labels': example[CATEGORY_KEY],
        'sub_labels': example[SUBCATEGORY_KEY],
    }
    if attribute_labels:
      out['image_attribute_labels'] = example[ATTRIBUTES_KEY]  # [B, K]
      out['caption_attribute_labels'] = paired(ATTRIBUTES_KEY)  # [B, K]
    return out

  steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
  dataset = (
      steps.map(plan.step_rows)
      .unbatch()
      .map(read_row, num_parallel_calls=tf.data.AUTOTUNE)
      .batch(plan.local_batch_size, drop_remainder=True)
      .map(assemble)
      .prefetch(prefetch)
  )
  return dataset.with_options(_pipeline_options(num_workers))


def train_iterator(
    data_dir: str,
    name: str,
    split: str,
    global_batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    itm_negative_prob: float = DEFAULT_ITM_NEGATIVE_PROB,
    itm_hard_negative_prob: float = 0.0,
    itm_hard_negative_from_step: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    process_index: int | None = None,
    process_count: int | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    num_workers: int | None = None,
    attribute_labels: bool = False,
    repeats: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Endless training batches of this host, from step `start_step` on.

  Args:
    data_dir, name, split: the prepared TFDS dataset and split.
    global_batch_size: examples per step over all hosts.
    seed: the data seed; epoch orders and ITM draws derive from it.
    start_step: the first step to produce (resumption): the batches are the
      ones an iterator started at 0 yields from that step on.
    itm_negative_prob: chance that an image is paired with another caption.
    itm_hard_negative_prob: chance that such a caption comes from an item of
      the same sub-category (0 in the paper's recipe; see `itm_partners`).
    itm_hard_negative_from_step: steps before this one draw no hard negatives
      (a curriculum: the coarse matching first, then the attributes).
    image_size: side of the delivered images (bilinear resize if the stored
      size differs).
    process_index, process_count: this host and the number of hosts
      (default: from jax).
    prefetch: finished batches kept ready ahead of the consumer.
    num_workers: threads of tf.data's private pool (default: TensorFlow's,
      the available cores).
    attribute_labels: also yield the attribute labels of each row's image
      (`image_attribute_labels`) and of the caption it is fed with
      (`caption_attribute_labels`: the partner's on ITM negatives), int32
      [B, K]; the dataset must have been prepared with them.
    repeats: each record appears this many times per epoch (the release's
      repeated sampling, see `epoch_records`; 1 = a plain shuffle).

  Yields:
    dicts with `images` uint8 [B, S, S, 3], `input_ids` int32 [B, L],
    `itm_labels`, `main_labels`, `sub_labels` int32 [B] (and the attribute
    labels above). The iterator has `close()`.
  """
  if seed < 0:
    raise PipelineConfigError(f'seed must be >= 0, got {seed}.')
  if start_step < 0:
    raise PipelineConfigError(f'start_step must be >= 0, got {start_step}.')
  for option, value in (
      ('itm_negative_prob', itm_negative_prob),
      ('itm_hard_negative_prob', itm_hard_negative_prob),
  ):
    if not 0.0 <= value <= 1.0:
      raise PipelineConfigError(f'{option} must be in [0, 1], got {value}.')
  if repeats < 1:
    raise PipelineConfigError(f'repeats must be >= 1, got {repeats}.')
  process_index, process_count = _process_topology(process_index, process_count)
  batch = local_batch_size(global_batch_size, process_count)
  _check_itm_batch(global_batch_size)  # here, not first inside the traced graph
  prepared = open_split(os.fspath(data_dir), name, split)
  total = prepared.num_examples
  epoch_steps = total // global_batch_size
  if epoch_steps == 0:
    raise PipelineConfigError(
        f'{prepared.dataset_dir} split {split!r} has {total} records, fewer '
        f'than one global batch of {global_batch_size}.'
    )
  if attribute_labels and ATTRIBUTES_KEY not in prepared.features:
    raise PipelineConfigError(
        f'{prepared.dataset_dir} has no attribute labels (feature {ATTRIBUTES_KEY!r}), '
        'which the attribute heads need: only synthetic_fashion has them, and one '
        'prepared by an older version does not; remove that folder to prepare it '
        "again, or leave 'attributes' out of config.model.heads."
    )
  _keep_tensorflow_off_accelerators()
  # Sub-category of every record, for hard ITM negatives (one pass over the split).
  subcategories = (
      read_metadata(data_dir, name, split).subcategories if itm_hard_negative_prob > 0 else None
  )
  plan = TrainPlan(
      reader=SplitReader(prepared, image_size=image_size),
      seed=seed,
      global_batch_size=global_batch_size,
      local_batch_size=batch,
      process_index=process_index,
      steps_per_epoch=epoch_steps,
      repeats=repeats,
      itm_negative_prob=itm_negative_prob,
      itm_hard_negative_prob=itm_hard_negative_prob,
      itm_hard_negative_from_step=itm_hard_negative_from_step,
      subcategories=subcategories,
  )
  dataset = train_dataset(
      plan,
      start_step=start_step,
      attribute_labels=attribute_labels,
      prefetch=prefetch,
      num_workers=num_workers,
  )
  keys = _TRAIN_KEYS + ((ATTRIBUTES_KEY,) if attribute_labels else ())
  return _Batches(dataset, plan.reader, lambda k: plan.records_of_step(start_step + k), keys)


_EVAL_KEYS = (IMAGE_KEY, INPUT_IDS_KEY, CATEGORY_KEY, SUBCATEGORY_KEY)


def eval_dataset(
    reader: SplitReader,
    global_batch_size: int,
    process_index: int,
    local_batch: int,
    *,
    prefetch: int = DEFAULT_PREFETCH,
    num_workers: int | None = None,
) -> tf.data.Dataset:
  """One pass over the split in stored order (see `eval_iterator`)."""
  total = reader.num_examples
  num_steps = -(-total // global_batch_size)

  def step_rows(step):  # -> [B] record indices of this host (>= N: padding)
    return (
        step * global_batch_size
        + process_index * local_batch
        + tf.range(local_batch, dtype=tf.int64)
    )

  def read_row(index):
    valid = index < total
    example = tf.cond(
        valid, lambda: reader.read(index, _EVAL_KEYS), lambda: reader.zeros(_EVAL_KEYS)
    )
    return {
        'images': example[IMAGE_KEY],
        'input_ids': example[INPUT_IDS_KEY],
        'main_labels': example[CATEGORY_KEY],
        'sub_labels': example[SUBCATEGORY_KEY],
        'valid': valid,
    }

  dataset = (
      tf.data.Dataset.range(num_steps)
      .map(step_rows)
      .unbatch()
      .map(read_row, num_parallel_calls=tf.data.AUTOTUNE)
      .batch(local_batch)
      .prefetch(prefetch)
  )
  return dataset.with_options(_pipeline_options(num_workers))


def eval_iterator(
    data_dir: str,
    name: str,
    split: str,
    global_batch_size: int,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    process_index: int | None = None,
    process_count: int | None = None,
    pad_to_full_batch: bool = True,
    prefetch: int = DEFAULT_PREFETCH,
    num_workers: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """One pass over a split, in stored order, every record exactly once.

  Global batch `s` holds records [s * G, (s + 1) * G); this host reads its
  slice [s * G + p * B, s * G + (p + 1) * B). Every host yields the same
  number of batches, ceil(N / G); rows past the end of the split are zero
  and marked `valid = False` (with `pad_to_full_batch=False` they are left
  out instead, so the last batches are smaller, possibly empty).

  Yields:
    dicts with `images` uint8 [B, S, S, 3], `input_ids` int32 [B, L],
    `main_labels`, `sub_labels` int32 [B], `valid` bool [B].
  """
  process_index, process_count = _process_topology(process_index, process_count)
  batch = local_batch_size(global_batch_size, process_count)
  prepared = open_split(os.fspath(data_dir), name, split)
  _keep_tensorflow_off_accelerators()
  reader = SplitReader(prepared, image_size=image_size)
  dataset = eval_dataset(
      reader, global_batch_size, process_index, batch, prefetch=prefetch, num_workers=num_workers
  )

  def rows_of(step):
    first = step * global_batch_size + process_index * batch
    return np.arange(first, min(first + batch, reader.num_examples))

  def finish(out):
    return out if pad_to_full_batch else {k: v[out['valid']] for k, v in out.items()}

  return _Batches(dataset, reader, rows_of, _EVAL_KEYS, finish)


# --------------------------------------------------------------------------
# Split metadata and access by record id (retrieval evaluation).
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SplitMetadata:
  """The small fields of every record of a split, in stored order."""

  ids: np.ndarray  # object [N] of str
  product_ids: np.ndarray  # object [N] of str
  categories: np.ndarray  # int32 [N]
  subcategories: np.ndarray  # int32 [N]
  poses: np.ndarray | None  # [N] (str or int), None if the dataset has none


def read_metadata(data_dir: str, name: str, split: str) -> SplitMetadata:
  """Reads ids, product ids, categories (and poses) of all records of a split.

  One sequential tf.data pass over the shards, in stored order; images are
  not decoded.
  """
  prepared = open_split(os.fspath(data_dir), name, split)
  keys = [ID_KEY, PRODUCT_ID_KEY, CATEGORY_KEY, SUBCATEGORY_KEY]
  if POSE_KEY in prepared.features:
    keys.append(POSE_KEY)
  specs = {key: _parse_spec(prepared.features[key], key) for key in keys}
  dataset = (
      tf.data.TFRecordDataset(list(prepared.filepaths))
      .batch(METADATA_CHUNK)
      .map(
          lambda serialized: tf.io.parse_example(serialized, specs),
          num_parallel_calls=tf.data.AUTOTUNE,
      )
      .prefetch(2)
  )
  columns: dict[str, list[np.ndarray]] = {k: [] for k in keys}
  try:
    for chunk in dataset:
      for key in keys:
        columns[key].append(chunk[key].numpy())
  except tf.errors.OpError as e:
    raise PreparedDatasetError(
        f'{prepared.description}: cannot read the record metadata: ' f'{_first_line(e.message)}'
    ) from None

  def column(key):
    return np.concatenate(columns[key]) if columns[key] else np.zeros(0)

  def text(key):
    return np.array([_as_str(v) for v in column(key)], dtype=object)

  ids = text(ID_KEY)
  if len(ids) != prepared.num_examples:
    raise PreparedDatasetError(
        f'{prepared.description}: holds {len(ids)} records, its info says '
        f'{prepared.num_examples}; prepare the dataset again.'
    )
  poses = None
  if POSE_KEY in keys:
    poses = column(POSE_KEY)
    if poses.dtype.kind in 'SO':
      poses = text(POSE_KEY)
  return SplitMetadata(
      ids=ids,
      product_ids=text(PRODUCT_ID_KEY),
      categories=column(CATEGORY_KEY).astype(np.int32),
      subcategories=column(SUBCATEGORY_KEY).astype(np.int32),
      poses=poses,
  )


class SplitView:
  """Images and captions of a split's records, looked up by record id.

  `pairs(image_ids, text_ids, batch_size)` is the bulk path (a tf.data
  pipeline: the image of one record with the caption of another, batched);
  `images(ids)` -> uint8 [n, S, S, 3] and `input_ids(ids)` -> int32 [n, L]
  read a few records. It is the view the retrieval evaluation reads its
  queries and candidates from (`retrieval_sets.RecordView`).
  """

  def __init__(
      self,
      data_dir: str,
      name: str,
      split: str,
      *,
      image_size: int = DEFAULT_IMAGE_SIZE,
      metadata: SplitMetadata | None = None,
      prefetch: int = DEFAULT_PREFETCH,
      num_workers: int | None = None,
  ):
    prepared = open_split(os.fspath(data_dir), name, split)
    self._description = prepared.description
    self.metadata = metadata or read_metadata(data_dir, name, split)
    self._index_of = {record_id: i for i, record_id in enumerate(self.metadata.ids)}
    if len(self._index_of) != len(self.metadata.ids):
      raise PreparedDatasetError(f'{self._description}: record ids are not unique.')
    _keep_tensorflow_off_accelerators()
    self._reader = SplitReader(prepared, image_size=image_size)
    self._prefetch = prefetch
    self._num_workers = num_workers

  def __len__(self) -> int:
    return len(self._index_of)

  def __contains__(self, record_id: str) -> bool:
    return record_id in self._index_of

  def _indices(self, ids: Sequence[str]) -> np.ndarray:
    try:
      return np.array([self._index_of[i] for i in ids], np.int64)
    except KeyError as e:
      raise PreparedDatasetError(f'{self._description}: no record with id {e.args[0]!r}.') from None

  def pairs(
      self,
      image_ids: Sequence[str],
      text_ids: Sequence[str],
      batch_size: int,
      *,
      prefetch: int | None = None,
  ) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `images` (of `image_ids`) with `input_ids` (of `text_ids`).

    Row i holds the image of record `image_ids[i]` and the caption of record
    `text_ids[i]`; batches hold `batch_size` rows (the last one fewer), and
    `prefetch` of them (default: the view's) are read ahead. A record whose
    image and caption are both wanted is read once.
    """
    if len(image_ids) != len(text_ids):
      raise PipelineConfigError(
          f'pairs: {len(image_ids)} image ids but {len(text_ids)} caption ids.'
      )
    image_index, text_index = self._indices(image_ids), self._indices(text_ids)
    reader = self._reader

    def read_pair(image_record, text_record):
      serialized = reader.serialized(image_record)
      image = reader.parse(serialized, (IMAGE_KEY,))[IMAGE_KEY]
      caption = tf.cond(
          tf.equal(image_record, text_record),
          lambda: reader.parse(serialized, (INPUT_IDS_KEY,))[INPUT_IDS_KEY],
          lambda: reader.read(text_record, (INPUT_IDS_KEY,))[INPUT_IDS_KEY],
      )
      return {'images': image, 'input_ids': caption}

    dataset = (
        tf.data.Dataset.from_tensor_slices((image_index, text_index))
        .map(read_pair, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(max(1, batch_size))
        .prefetch(self._prefetch if prefetch is None else max(1, prefetch))
        .with_options(_pipeline_options(self._num_workers))
    )
    size = max(1, batch_size)

    def rows_of(k):
      rows = slice(k * size, (k + 1) * size)
      return np.unique(np.concatenate([image_index[rows], text_index[rows]]))

    return _Batches(dataset, reader, rows_of, (IMAGE_KEY, INPUT_IDS_KEY))

  def images(self, ids: Sequence[str]) -> np.ndarray:
    return self._read_all(ids, ids)['images']

  def input_ids(self, ids: Sequence[str]) -> np.ndarray:
    return self._read_all(ids, ids)['input_ids']

  def captions(self, ids: Sequence[str]) -> list[str] | None:
    """The stored caption text of records; None when the dataset keeps no caption text."""
    if CAPTION_KEY not in self._reader.features:
      return None
    spec = {CAPTION_KEY: tf.io.FixedLenFeature([], tf.string)}
    texts = []
    for index in self._indices(ids):
      serialized = self._reader.serialized(tf.constant(index, tf.int64))
      parsed = tf.io.parse_single_example(serialized, spec)
      texts.append(parsed[CAPTION_KEY].numpy().decode('utf-8', errors='replace'))
    return texts

  def _read_all(self, image_ids, text_ids) -> dict[str, np.ndarray]:
    if not len(image_ids):
      size = self._reader.image_size
      length = self._reader.features[INPUT_IDS_KEY].shape[0]
      return {
          'images': np.zeros((0, size, size, 3), np.uint8),
          'input_ids': np.zeros((0, length), np.int32),
      }
    (batch,) = list(self.pairs(image_ids, text_ids, len(image_ids)))
    return batch

  def close(self) -> None:
    pass
