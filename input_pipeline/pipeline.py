"""Training and evaluation input pipelines over a prepared TFDS dataset.

Design
------
The pipelines deliver raw inputs only (MLM word masking and grid image masking
happen on device, in `mvlt_jax.masking`). Every batch is a pure function of
its step:

* Records are read by **index**, straight from the shard files of the prepared
  TFDS split (TFRecord, the TFDS default, through a byte-offset index built
  from the record headers; or ArrayRecord through its own reader). TFRecord
  shards have no random access of their own, which is why the reader is ours.
* Epoch ``e`` visits the records in the order of a permutation drawn from
  ``(seed, e)`` (with repeated sampling, each entry repeated k times and cut
  to N: ``epoch_order``), so step ``s`` reads ``perm_e[pos * G:(pos + 1) * G]`` with
  ``e, pos = divmod(s, steps_per_epoch)``, and this host its slice of it.
  Resuming at step ``k`` therefore costs nothing: no record before ``k`` is
  read, let alone decoded.
* Parsing, image decoding and resizing run as one compiled TensorFlow graph
  per batch (C++ kernels, the GIL released); a small pool of Python threads
  builds several batches at once, keeping ``prefetch`` of them in flight
  ahead of the consumer. There is no ``tf.py_function`` anywhere: Python only computes
  indices and copies record bytes.
* Image-text matching (ITM) pairs are formed per batch: with probability
  ``itm_negative_prob`` an item gets the caption of another row drawn
  uniformly from the same GLOBAL batch (the same draw on every host), which is
  itself a uniform sample of the split; its label is 1 exactly when the two
  share a product id.

Batches are dicts of numpy arrays:

* training: ``images`` uint8 [B, S, S, 3], ``input_ids`` int32 [B, L],
  ``itm_labels`` int32 [B] (1 = matched), ``main_labels`` / ``sub_labels``
  int32 [B];
* evaluation: ``images``, ``input_ids`` (the item's own caption),
  ``main_labels``, ``sub_labels`` and ``valid`` bool [B] (False on the rows
  that pad the last batch to full size).

B is the per-host batch, ``global_batch_size // process_count``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import itertools
import os
import struct
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from google.protobuf import message as protobuf_message
import tensorflow as tf
from tensorflow.core.example import example_pb2
import tensorflow_datasets as tfds

from input_pipeline import errors

# Names of the features of a prepared dataset (the on-disk contract).
ID_KEY = "id"
PRODUCT_ID_KEY = "product_id"
IMAGE_KEY = "image"
CAPTION_KEY = "caption"
INPUT_IDS_KEY = "input_ids"
CATEGORY_KEY = "category"
SUBCATEGORY_KEY = "subcategory"
POSE_KEY = "pose"
ATTRIBUTES_KEY = "attributes"  # optional: int32 [K] (builders.ATTRIBUTES_FEATURE)
REQUIRED_FEATURES = (ID_KEY, PRODUCT_ID_KEY, IMAGE_KEY, INPUT_IDS_KEY,
                     CATEGORY_KEY, SUBCATEGORY_KEY)

# Defaults; the training / evaluation configs pass their own values.
DEFAULT_IMAGE_SIZE = 256
DEFAULT_ITM_NEGATIVE_PROB = 0.5
DEFAULT_PREFETCH = 4
DEFAULT_DECODE_PARALLELISM = 16

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
# Random access to the serialized records of a split.
# --------------------------------------------------------------------------


class TFRecordReader:
  """Reads serialized records of TFRecord shards by global record index.

  The byte offset of every record is found once by walking the record headers
  (a 12-byte read per record, no data is read), then each record is one
  `os.pread`. CRCs are not checked here.
  """

  def __init__(self, filepaths: Sequence[str],
               expected_lengths: Sequence[int] | None = None):
    self._paths = [os.fspath(p) for p in filepaths]
    self._fds: list[int] = []
    try:
      self._fds = [os.open(p, os.O_RDONLY) for p in self._paths]
      shard_of = [np.zeros(0, np.int32)]
      offsets, lengths = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
      for shard, (path, fd) in enumerate(zip(self._paths, self._fds)):
        shard_offsets, shard_lengths = _scan_tfrecord_file(path, fd)
        if (expected_lengths is not None
            and len(shard_offsets) != expected_lengths[shard]):
          raise PreparedDatasetError(
              f"{path}: holds {len(shard_offsets)} records but the dataset "
              f"info says {expected_lengths[shard]}; the dataset is corrupt "
              "or was only partly written: prepare it again.")
        shard_of.append(np.full(len(shard_offsets), shard, np.int32))
        offsets.append(np.asarray(shard_offsets, np.int64))
        lengths.append(np.asarray(shard_lengths, np.int64))
    except OSError as e:
      self.close()
      raise PreparedDatasetError(f"{e.filename}: cannot read: {e.strerror}.") from e
    except PreparedDatasetError:
      self.close()
      raise
    self._shard_of = np.concatenate(shard_of)  # [N] shard of each record
    self._offsets = np.concatenate(offsets)  # [N] byte offset of each record
    self._lengths = np.concatenate(lengths)  # [N] byte length of each record

  def __len__(self) -> int:
    return len(self._offsets)

  def read(self, indices: Sequence[int]) -> list[bytes]:
    records = []
    for index in indices:
      shard = self._shard_of[index]
      length = int(self._lengths[index])
      data = os.pread(self._fds[shard], length, int(self._offsets[index]))
      if len(data) != length:
        raise PreparedDatasetError(
            f"{self._paths[shard]}: record {index} is truncated "
            f"({len(data)} of {length} bytes).")
      records.append(data)
    return records

  def close(self, _os_close=os.close) -> None:
    # `os.close` is bound at definition: generators may be closed at interpreter exit,
    # after module globals are gone.
    for fd in self._fds:
      _os_close(fd)
    self._fds = []


def _scan_tfrecord_file(path: str, fd: int) -> tuple[list[int], list[int]]:
  """Returns the data offsets and lengths of the records of one TFRecord file."""
  file_size = os.fstat(fd).st_size
  offsets, lengths = [], []
  position = 0
  while position < file_size:
    header = os.pread(fd, _TFRECORD_HEADER_BYTES, position)
    if len(header) != _TFRECORD_HEADER_BYTES:
      raise PreparedDatasetError(
          f"{path}: truncated record header at byte {position}.")
    (length,) = struct.unpack("<Q", header[:8])
    data_offset = position + _TFRECORD_HEADER_BYTES
    position = data_offset + length + _TFRECORD_FOOTER_BYTES
    if position > file_size:
      raise PreparedDatasetError(
          f"{path}: record {len(offsets)} claims {length} bytes, beyond the "
          f"end of the file ({file_size} bytes); not a TFRecord file or "
          "truncated.")
    offsets.append(data_offset)
    lengths.append(length)
  return offsets, lengths


class ArrayRecordReader:
  """Reads serialized records of ArrayRecord shards by global record index."""

  def __init__(self, filepaths: Sequence[str]):
    from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
    self._source = array_record_data_source.ArrayRecordDataSource(
        [os.fspath(p) for p in filepaths])

  def __len__(self) -> int:
    return len(self._source)

  def read(self, indices: Sequence[int]) -> list[bytes]:
    return list(self._source.__getitems__([int(i) for i in indices]))

  def close(self) -> None:
    pass


# --------------------------------------------------------------------------
# The prepared split: metadata, reader and decoder.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
  """Where the records of one split of a prepared dataset live."""
  name: str
  split: str
  dataset_dir: str
  features: tfds.features.FeaturesDict
  file_format: str
  filepaths: tuple[str, ...]
  shard_lengths: tuple[int, ...]

  @property
  def num_examples(self) -> int:
    return sum(self.shard_lengths)

  def open_reader(self) -> TFRecordReader | ArrayRecordReader:
    if self.file_format == "tfrecord":
      return TFRecordReader(self.filepaths, self.shard_lengths)
    if self.file_format == "array_record":
      return ArrayRecordReader(self.filepaths)
    raise PreparedDatasetError(
        f"{self.dataset_dir}: file format {self.file_format!r} has no "
        "random-access reader here (use tfrecord or array_record).")


def open_split(data_dir: str, name: str, split: str) -> PreparedSplit:
  """Locates one split of a prepared TFDS dataset and checks its features."""
  data_dir = os.fspath(data_dir)
  how_to_prepare = (f"Prepare it with `python -m input_pipeline.prepare {name} "
                    f"--data_dir={data_dir}`.")
  if not os.path.isdir(os.path.join(data_dir, name)):
    raise PreparedDatasetError(
        f"No prepared dataset {name!r} under {data_dir}. {how_to_prepare}")
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types for a missing dataset.
    reason = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
    raise PreparedDatasetError(
        f"Cannot open dataset {name!r} under {data_dir}: {reason} "
        f"{how_to_prepare}") from e
  if not builder.is_prepared():
    raise PreparedDatasetError(
        f"Dataset {name!r} is not prepared under {data_dir}. {how_to_prepare}")
  dataset_dir = os.fspath(builder.data_dir)
  splits = builder.info.splits
  if split not in splits:
    raise PreparedDatasetError(
        f"{dataset_dir}: no split {split!r}; available: {sorted(splits)}.")
  split_info = splits[split]
  if not hasattr(split_info, "shard_lengths") or "[" in split:
    raise PipelineConfigError(
        f"Split {split!r}: only whole splits are supported, not slices.")
  features = builder.info.features
  _check_features(features, dataset_dir)
  file_format = builder.info.file_format
  file_format = getattr(file_format, "value", file_format) or "tfrecord"
  filepaths = tuple(os.fspath(p) for p in split_info.filepaths)
  for path in filepaths:
    if "://" in path:
      raise PreparedDatasetError(
          f"{path}: random-access reading needs a local file system.")
  return PreparedSplit(
      name=name, split=split, dataset_dir=dataset_dir, features=features,
      file_format=str(file_format), filepaths=filepaths,
      shard_lengths=tuple(int(n) for n in split_info.shard_lengths))


def _is_raw_bytes_tensor(feature: tfds.features.FeatureConnector) -> bool:
  """Whether `feature` is a uint8 Tensor stored as its raw bytes."""
  return (isinstance(feature, tfds.features.Tensor)
          and not isinstance(feature, tfds.features.Image)
          and feature.to_json_content().encoding == "bytes"
          and feature.np_dtype == np.uint8)


def _check_features(features: tfds.features.FeaturesDict,
                    dataset_dir: str) -> None:
  missing = [k for k in REQUIRED_FEATURES if k not in features]
  if missing:
    raise PreparedDatasetError(
        f"{dataset_dir}: features {missing} are missing; the dataset has "
        f"{sorted(features.keys())}.")
  image_shape = features[IMAGE_KEY].shape
  if len(image_shape) != 3 or image_shape[-1] != 3 or None in image_shape:
    raise PreparedDatasetError(
        f"{dataset_dir}: feature {IMAGE_KEY!r} must be an RGB image "
        f"of static shape [H, W, 3], found shape {image_shape}.")
  ids_shape = features[INPUT_IDS_KEY].shape
  if len(ids_shape) != 1 or ids_shape[0] is None:
    raise PreparedDatasetError(
        f"{dataset_dir}: feature {INPUT_IDS_KEY!r} must have the static shape "
        f"[text_length], found {ids_shape}.")


class ExampleDecoder:
  """Turns serialized examples into stacked numpy arrays of the wanted keys.

  The `tf.train.Example` protos are parsed in C by protobuf (much faster than
  `tf.io.parse_example` for records holding raw image bytes); images come out
  as uint8 [n, image_size, image_size, 3] whichever way they are stored (raw
  bytes: copied into the batch; encoded `Image`: decoded by a compiled
  TensorFlow graph, `decode_parallelism` at a time, the GIL released) and are
  bilinearly resized (half-pixel centres, no antialiasing) when the stored
  size differs. Integer features come out as int32, text as bytes (object
  arrays).
  """

  def __init__(self, features: tfds.features.FeaturesDict,
               keys: Sequence[str], *, image_size: int = DEFAULT_IMAGE_SIZE,
               decode_parallelism: int = DEFAULT_DECODE_PARALLELISM,
               source: str = "dataset"):
    self._keys = tuple(keys)
    self._source = source
    self._image_size = image_size
    self._fields = {key: _FieldSpec.of(features[key], key)
                    for key in self._keys if key != IMAGE_KEY}
    self._image = None
    if IMAGE_KEY in self._keys:
      feature = features[IMAGE_KEY]
      self._image = _FieldSpec(IMAGE_KEY, "bytes", ())
      self._stored_shape = tuple(feature.shape)  # (H, W, 3)
      self._raw_images = _is_raw_bytes_tensor(feature)
      if not self._raw_images and not isinstance(feature, tfds.features.Image):
        raise PreparedDatasetError(
            f"{source}: feature {IMAGE_KEY!r} is a {type(feature).__name__}; "
            "expected an Image or a uint8 Tensor stored as bytes.")
      height, width, _ = self._stored_shape
      size = image_size

      def resize(images):  # [n, H, W, 3] -> uint8 [n, S, S, 3]
        if (height, width) == (size, size):
          return tf.cast(images, tf.uint8)
        images = tf.image.resize(images, [size, size], method="bilinear")
        return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)

      def decode_one(encoded):  # scalar string -> uint8 [H, W, 3]
        return tf.ensure_shape(feature.decode_example(encoded), [height, width, 3])

      def decode(encoded):  # [n] strings -> uint8 [n, S, S, 3]
        return resize(tf.map_fn(
            decode_one, encoded, parallel_iterations=decode_parallelism,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8)))

      self._resize = tf.function(resize, input_signature=[
          tf.TensorSpec([None, height, width, 3], tf.uint8)])
      self._decode = tf.function(decode, input_signature=[
          tf.TensorSpec([None], tf.string)])

  def __call__(self, serialized: Sequence[bytes],
               record_indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Decodes `serialized` (records `record_indices` of the split)."""
    columns: dict[str, list[Any]] = {key: [] for key in self._fields}
    images: list[Any] = []
    for record, index in zip(serialized, record_indices):
      try:
        feature_map = example_pb2.Example.FromString(record).features.feature
        for key, field in self._fields.items():
          columns[key].append(field.read(feature_map))
        if self._image is not None:
          images.append(self._image.read(feature_map))
      except (_RecordError, protobuf_message.DecodeError) as e:
        raise PreparedDatasetError(
            f"{self._source}: record {index}: {e}") from None
    out = {key: self._fields[key].stack(values)
           for key, values in columns.items()}
    if self._image is not None:
      out[IMAGE_KEY] = self._images(images, record_indices)
    return out

  def _images(self, stored: list[bytes],
              record_indices: Sequence[int]) -> np.ndarray:
    """Stored image bytes -> uint8 [n, S, S, 3]."""
    if self._raw_images:
      expected = int(np.prod(self._stored_shape))
      batch = np.empty((len(stored),) + self._stored_shape, np.uint8)
      for row, (data, index) in enumerate(zip(stored, record_indices)):
        if len(data) != expected:
          raise PreparedDatasetError(
              f"{self._source}: record {index}: {IMAGE_KEY!r} holds "
              f"{len(data)} bytes, expected {expected} "
              f"({'x'.join(map(str, self._stored_shape))} uint8).")
        batch[row] = np.frombuffer(data, np.uint8).reshape(self._stored_shape)
      if self._stored_shape[:2] == (self._image_size, self._image_size):
        return batch
      return self._resize(batch).numpy()
    try:
      return self._decode(tf.constant(stored, tf.string)).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
      raise PreparedDatasetError(
          f"{self._source}: cannot decode the images of records "
          f"{list(record_indices)[:16]}: {e.message.splitlines()[0]}") from e


class _RecordError(Exception):
  """A serialized example does not have a feature as the schema says."""


@dataclasses.dataclass(frozen=True)
class _FieldSpec:
  """How one feature is stored in a `tf.train.Example` and read back."""
  key: str
  kind: str  # "bytes" | "int64" | "float"
  shape: tuple[int, ...]

  @classmethod
  def of(cls, feature: tfds.features.FeatureConnector, key: str) -> _FieldSpec:
    info = feature.get_serialized_info()
    if not isinstance(info, tfds.features.TensorInfo) or None in info.shape:
      raise PreparedDatasetError(
          f"feature {key!r}: only fixed-shape features are supported here.")
    dtype = np.dtype(info.np_dtype)
    if dtype.kind in "SOU":
      kind = "bytes"
    elif dtype.kind in "iub":
      kind = "int64"
    else:
      kind = "float"
    return cls(key, kind, tuple(info.shape))

  def read(self, feature_map) -> Any:
    if self.key not in feature_map:
      raise _RecordError(f"feature {self.key!r} is missing")
    values = getattr(feature_map[self.key], f"{self.kind}_list").value
    expected = int(np.prod(self.shape))
    if len(values) != expected:
      raise _RecordError(
          f"feature {self.key!r} holds {len(values)} {self.kind} values, "
          f"expected {expected} (shape {self.shape})")
    if not self.shape:
      return values[0]
    return np.asarray(values).reshape(self.shape)

  def stack(self, values: list[Any]) -> np.ndarray:
    if self.kind == "bytes":
      array = np.empty((len(values),) + self.shape, dtype=object)
      array[...] = values if not self.shape else np.stack(values)
      return array
    array = np.asarray(values).reshape((len(values),) + self.shape)
    return array.astype(np.int32 if self.kind == "int64" else np.float32)


class SplitSource:
  """Random access to decoded examples of one split, by record index."""

  def __init__(self, prepared: PreparedSplit, keys: Sequence[str], *,
               image_size: int = DEFAULT_IMAGE_SIZE,
               decode_parallelism: int = DEFAULT_DECODE_PARALLELISM):
    self.prepared = prepared
    self._reader = prepared.open_reader()
    if len(self._reader) != prepared.num_examples:
      raise PreparedDatasetError(
          f"{prepared.dataset_dir}: split {prepared.split!r} holds "
          f"{len(self._reader)} records, its info says "
          f"{prepared.num_examples}.")
    self._decoder = ExampleDecoder(
        prepared.features, keys, image_size=image_size,
        decode_parallelism=decode_parallelism,
        source=f"{prepared.dataset_dir} split {prepared.split!r}")

  def __len__(self) -> int:
    return len(self._reader)

  def read(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Decoded features of the records `indices`, stacked in that order."""
    return self._decoder(self._reader.read(indices), indices)

  def close(self) -> None:
    self._reader.close()


# --------------------------------------------------------------------------
# Shared helpers.
# --------------------------------------------------------------------------


def _process_topology(process_index: int | None,
                      process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise PipelineConfigError(
        f"process_index {process_index} is outside [0, {process_count}).")
  return process_index, process_count


def local_batch_size(global_batch_size: int, process_count: int) -> int:
  """The per-host batch; the global batch must split evenly over hosts."""
  if global_batch_size <= 0:
    raise PipelineConfigError(
        f"global_batch_size must be positive, got {global_batch_size}.")
  if global_batch_size % process_count:
    raise PipelineConfigError(
        f"global_batch_size {global_batch_size} does not divide evenly over "
        f"{process_count} processes; choose a multiple of {process_count}.")
  return global_batch_size // process_count


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """A random order of the records for epoch `epoch`: int64 [N]."""
  rng = np.random.default_rng([seed, _PERMUTATION_STREAM, epoch])
  return rng.permutation(num_examples)


def epoch_order(seed: int, epoch: int, num_examples: int,
                repeats: int = 1) -> np.ndarray:
  """The records epoch `epoch` visits, in order: int64 [N].

  With `repeats` k > 1 this is the release's repeated-augmentation sampler
  (timm/DeiT `RASampler`): each record of the epoch's permutation appears k
  times in a row, and the epoch keeps the first N entries, so it covers about
  N / k distinct records, each k times. The copies fall in the same global
  batch (as the release's do over its GPUs: its global batch is a contiguous
  slice of the same repeated list) and differ by their word mask, grid mask
  and ITM draw, which are drawn per row.
  """
  if repeats < 1:
    raise PipelineConfigError(f"repeats must be >= 1, got {repeats}.")
  order = epoch_permutation(seed, epoch, num_examples)
  if repeats == 1:
    return order
  return np.repeat(order[:-(-num_examples // repeats)], repeats)[:num_examples]


def itm_partners(global_batch_size: int, rows: np.ndarray, *,
                 negative_prob: float, rng: np.random.Generator,
                 hard_negative_prob: float = 0.0,
                 subcategories: np.ndarray | None = None) -> np.ndarray:
  """Positions in the GLOBAL batch whose captions the rows `rows` are fed with.

  The draw covers the whole global batch from a stream keyed by the step only,
  so every host forms the same pairs whatever the number of hosts. A row gets
  its own caption, or with probability `negative_prob` the caption of another
  row of the global batch drawn uniformly (never itself). With
  `hard_negative_prob`, a negative is instead drawn among the other rows of the
  same sub-category (when the global batch has any): a harder negative that
  only attributes (colour, pattern, length...) tell apart.

  Args:
    global_batch_size: G, rows of the global batch.
    rows: int [B] positions of this host's rows in the global batch.
    negative_prob: chance that a row gets another row's caption.
    rng: the random stream of this step (the same on every host).
    hard_negative_prob: chance that a negative comes from the same sub-category.
    subcategories: int [G] sub-category of every row (needed for hard negatives).

  Returns:
    int [B] partner positions in [0, G).
  """
  if global_batch_size < 2:
    raise PipelineConfigError(
        "ITM negatives are drawn from the global batch, which must hold at "
        f"least 2 items (got {global_batch_size}).")
  positions = np.arange(global_batch_size)
  negative = rng.random(global_batch_size) < negative_prob  # [G]
  offset = rng.integers(1, global_batch_size, size=global_batch_size)  # [G]
  hard = rng.random(global_batch_size) < hard_negative_prob  # [G]
  pick = rng.random(global_batch_size)  # [G] uniform choice among same-sub-category rows
  partner = (positions + offset) % global_batch_size
  if hard_negative_prob > 0:
    if subcategories is None:
      raise PipelineConfigError("hard ITM negatives need the rows' sub-categories.")
    for row in np.flatnonzero(hard & negative):
      same = np.flatnonzero((subcategories == subcategories[row]) & (positions != row))
      if len(same):
        partner[row] = same[int(pick[row] * len(same))]
  partner = np.where(negative, partner, positions)  # [G]
  return partner[rows]


def ordered_map(make: Callable[[int], Any], keys: Iterator[int], *,
                num_workers: int, depth: int, ordered: bool) -> Iterator[Any]:
  """Runs `make(key)` on a thread pool, at most `depth` ahead of the consumer.

  Yields results in key order when `ordered`, else as they complete.
  """
  executor = concurrent.futures.ThreadPoolExecutor(
      max_workers=num_workers, thread_name_prefix="input_pipeline")
  pending: collections.deque[concurrent.futures.Future] = collections.deque()
  try:
    for key in keys:
      pending.append(executor.submit(make, key))
      if len(pending) < depth:
        continue
      if ordered:
        yield pending.popleft().result()
      else:
        done = next(concurrent.futures.as_completed(pending))
        pending.remove(done)
        yield done.result()
    while pending:
      yield pending.popleft().result()
  finally:
    for future in pending:
      future.cancel()
    executor.shutdown(wait=True, cancel_futures=True)


def _default_num_workers() -> int:
  return max(1, len(os.sched_getaffinity(0)))


def _as_str(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------


def num_examples(data_dir: str, name: str, split: str) -> int:
  """Number of records in a split of a prepared dataset."""
  return open_split(os.fspath(data_dir), name, split).num_examples


def steps_per_epoch(data_dir: str, name: str, split: str,
                    global_batch_size: int) -> int:
  """Training steps per epoch (global batches; the remainder is dropped)."""
  if global_batch_size <= 0:
    raise PipelineConfigError(
        f"global_batch_size must be positive, got {global_batch_size}.")
  return num_examples(data_dir, name, split) // global_batch_size


_TRAIN_KEYS = (IMAGE_KEY, INPUT_IDS_KEY, CATEGORY_KEY, SUBCATEGORY_KEY,
               PRODUCT_ID_KEY)


def train_iterator(data_dir: str, name: str, split: str,
                   global_batch_size: int, *, seed: int, start_step: int = 0,
                   itm_negative_prob: float = DEFAULT_ITM_NEGATIVE_PROB,
                   itm_hard_negative_prob: float = 0.0,
                   itm_hard_negative_from_step: int = 0,
                   image_size: int = DEFAULT_IMAGE_SIZE,
                   shuffle_buffer: int | None = None,
                   deterministic: bool = False,
                   process_index: int | None = None,
                   process_count: int | None = None,
                   prefetch: int = DEFAULT_PREFETCH,
                   num_workers: int | None = None,
                   decode_parallelism: int = DEFAULT_DECODE_PARALLELISM,
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
    shuffle_buffer: unused; accepted for compatibility. The shuffle is a full
      permutation of the split per epoch (an unbounded buffer).
    deterministic: True yields batches strictly in step order; False yields
      those ready first among the ones in flight (batch contents are the
      same; only their order may differ by up to `num_workers + prefetch`
      steps).
    process_index, process_count: this host and the number of hosts
      (default: from jax).
    prefetch: finished batches kept ready ahead of the consumer.
    num_workers: threads building batches (default: available cores).
    decode_parallelism: encoded images of one batch decoded concurrently.
    attribute_labels: also yield the attribute labels of each row's image
      (`image_attribute_labels`) and of the caption it is fed with
      (`caption_attribute_labels`: the partner's on ITM negatives), int32
      [B, K]; the dataset must have been prepared with them.
    repeats: each record appears this many times per epoch (the release's
      repeated sampling, see `epoch_order`; 1 = a plain permutation).

  Yields:
    dicts with `images` uint8 [B, S, S, 3], `input_ids` int32 [B, L],
    `itm_labels`, `main_labels`, `sub_labels` int32 [B] (and the attribute
    labels above).
  """
  del shuffle_buffer
  if seed < 0:
    raise PipelineConfigError(f"seed must be >= 0, got {seed}.")
  if start_step < 0:
    raise PipelineConfigError(f"start_step must be >= 0, got {start_step}.")
  if not 0.0 <= itm_negative_prob <= 1.0:
    raise PipelineConfigError(
        f"itm_negative_prob must be in [0, 1], got {itm_negative_prob}.")
  if not 0.0 <= itm_hard_negative_prob <= 1.0:
    raise PipelineConfigError(
        f"itm_hard_negative_prob must be in [0, 1], got {itm_hard_negative_prob}.")
  process_index, process_count = _process_topology(process_index, process_count)
  batch = local_batch_size(global_batch_size, process_count)
  prepared = open_split(os.fspath(data_dir), name, split)
  total = prepared.num_examples
  epoch_steps = total // global_batch_size
  if epoch_steps == 0:
    raise PipelineConfigError(
        f"{prepared.dataset_dir} split {split!r} has {total} records, fewer "
        f"than one global batch of {global_batch_size}.")
  if attribute_labels and ATTRIBUTES_KEY not in prepared.features:
    raise PipelineConfigError(
        f"{prepared.dataset_dir} has no attribute labels (feature {ATTRIBUTES_KEY!r}), "
        "which the attribute heads need: only synthetic_fashion has them, and one "
        "prepared by an older version does not; remove that folder to prepare it "
        "again, or leave 'attributes' out of config.model.heads.")
  attribute_keys = (ATTRIBUTES_KEY,) if attribute_labels else ()
  if repeats < 1:
    raise PipelineConfigError(f"repeats must be >= 1, got {repeats}.")
  permutations = _PermutationCache(seed, total, repeats)
  # Sub-category of every record, for hard ITM negatives (one pass over the split).
  record_subcategories = (
      read_metadata(data_dir, name, split).subcategories
      if itm_hard_negative_prob > 0 else None)
  # Captions and product ids of ITM partners, read without decoding any image.
  text_source = SplitSource(prepared, (INPUT_IDS_KEY, PRODUCT_ID_KEY) + attribute_keys)

  def make_batch(source: SplitSource, step: int) -> dict[str, np.ndarray]:
    epoch, position = divmod(step, epoch_steps)
    first = position * global_batch_size + process_index * batch
    permutation = permutations.get(epoch)
    indices = permutation[first:first + batch]  # [B]
    example = source.read(indices)
    rng = np.random.default_rng([seed, _ITM_STREAM, step])
    rows = np.arange(process_index * batch, (process_index + 1) * batch)  # [B]
    batch_indices = permutation[position * global_batch_size:
                                (position + 1) * global_batch_size]  # [G]
    partner_rows = itm_partners(
        global_batch_size, rows, negative_prob=itm_negative_prob, rng=rng,
        hard_negative_prob=(itm_hard_negative_prob
                            if step >= itm_hard_negative_from_step else 0.0),
        subcategories=(None if record_subcategories is None
                       else record_subcategories[batch_indices]))
    input_ids = example[INPUT_IDS_KEY].copy()  # [B, L]
    itm_labels = np.ones((batch,), np.int32)
    caption_attributes = example[ATTRIBUTES_KEY].copy() if attribute_labels else None
    swapped = np.flatnonzero(partner_rows != rows)
    if len(swapped):
      partner_indices = batch_indices[partner_rows[swapped]]
      partners = text_source.read(partner_indices)
      input_ids[swapped] = partners[INPUT_IDS_KEY]
      itm_labels[swapped] = (partners[PRODUCT_ID_KEY]
                             == example[PRODUCT_ID_KEY][swapped]).astype(np.int32)
      if attribute_labels:
        caption_attributes[swapped] = partners[ATTRIBUTES_KEY]
    out = {
        "images": example[IMAGE_KEY],
        "input_ids": input_ids,
        "itm_labels": itm_labels,
        "main_labels": example[CATEGORY_KEY],
        "sub_labels": example[SUBCATEGORY_KEY],
    }
    if attribute_labels:
      out["image_attribute_labels"] = example[ATTRIBUTES_KEY]  # [B, K]
      out["caption_attribute_labels"] = caption_attributes  # [B, K]
    return out

  def generate() -> Iterator[dict[str, np.ndarray]]:
    try:
      yield from _batches(
          prepared, _TRAIN_KEYS + attribute_keys, make_batch, itertools.count(start_step),
          image_size=image_size, decode_parallelism=decode_parallelism,
          num_workers=num_workers, prefetch=prefetch, ordered=deterministic)
    finally:
      text_source.close()

  return generate()


def _batches(prepared: PreparedSplit, keys: Sequence[str],
             make_batch: Callable[[SplitSource, int], dict[str, np.ndarray]],
             steps: Iterator[int], *, image_size: int, decode_parallelism: int,
             num_workers: int | None, prefetch: int, ordered: bool
             ) -> Iterator[dict[str, np.ndarray]]:
  """Yields `make_batch(source, step)` for `steps`, built on worker threads.

  Up to `num_workers` batches are being built and `prefetch` more wait ready.
  """
  source = SplitSource(prepared, keys, image_size=image_size,
                       decode_parallelism=decode_parallelism)
  num_workers = num_workers or _default_num_workers()
  try:
    yield from ordered_map(
        functools.partial(make_batch, source), steps, num_workers=num_workers,
        depth=num_workers + max(0, prefetch), ordered=ordered)
  finally:
    source.close()


class _PermutationCache:
  """Per-epoch permutations, shared by the worker threads."""

  def __init__(self, seed: int, num_examples: int, repeats: int = 1,
               capacity: int = 2):
    self._seed = seed
    self._num_examples = num_examples
    self._repeats = repeats
    self._capacity = capacity
    self._cache: collections.OrderedDict[int, np.ndarray] = (
        collections.OrderedDict())
    self._lock = threading.Lock()

  def get(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._cache:
        self._cache[epoch] = epoch_order(
            self._seed, epoch, self._num_examples, self._repeats)
        while len(self._cache) > self._capacity:
          self._cache.popitem(last=False)
      return self._cache[epoch]


_EVAL_KEYS = (IMAGE_KEY, INPUT_IDS_KEY, CATEGORY_KEY, SUBCATEGORY_KEY)


def eval_iterator(data_dir: str, name: str, split: str,
                  global_batch_size: int, *,
                  image_size: int = DEFAULT_IMAGE_SIZE,
                  process_index: int | None = None,
                  process_count: int | None = None,
                  pad_to_full_batch: bool = True,
                  prefetch: int = DEFAULT_PREFETCH,
                  num_workers: int | None = None,
                  decode_parallelism: int = DEFAULT_DECODE_PARALLELISM,
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
  total = prepared.num_examples
  num_steps = -(-total // global_batch_size)
  text_length = prepared.features[INPUT_IDS_KEY].shape[0]

  def make_batch(source: SplitSource, step: int) -> dict[str, np.ndarray]:
    first = step * global_batch_size + process_index * batch
    indices = np.arange(first, min(first + batch, total))
    count = len(indices)
    if count:
      example = source.read(indices)
    else:
      example = {
          IMAGE_KEY: np.zeros((0, image_size, image_size, 3), np.uint8),
          INPUT_IDS_KEY: np.zeros((0, text_length), np.int32),
          CATEGORY_KEY: np.zeros((0,), np.int32),
          SUBCATEGORY_KEY: np.zeros((0,), np.int32),
      }
    out = {
        "images": example[IMAGE_KEY],
        "input_ids": example[INPUT_IDS_KEY],
        "main_labels": example[CATEGORY_KEY],
        "sub_labels": example[SUBCATEGORY_KEY],
        "valid": np.ones((count,), bool),
    }
    if pad_to_full_batch and count < batch:
      out = {k: _pad_rows(v, batch) for k, v in out.items()}
    return out

  return _batches(
      prepared, _EVAL_KEYS, make_batch, iter(range(num_steps)),
      image_size=image_size, decode_parallelism=decode_parallelism,
      num_workers=num_workers, prefetch=prefetch, ordered=True)


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """Zero-pads the leading axis of `array` to `rows` rows."""
  padding = np.zeros((rows - len(array),) + array.shape[1:], array.dtype)
  return np.concatenate([array, padding])


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


def read_metadata(data_dir: str, name: str, split: str, *,
                  chunk_size: int = 1024) -> SplitMetadata:
  """Reads ids, product ids, categories (and poses) of all records of a split."""
  prepared = open_split(os.fspath(data_dir), name, split)
  keys = [ID_KEY, PRODUCT_ID_KEY, CATEGORY_KEY, SUBCATEGORY_KEY]
  if POSE_KEY in prepared.features:
    keys.append(POSE_KEY)
  reader = prepared.open_reader()
  decoder = ExampleDecoder(prepared.features, keys,
                           source=f"{prepared.dataset_dir} split {split!r}")
  columns: dict[str, list[np.ndarray]] = {k: [] for k in keys}
  try:
    for first in range(0, len(reader), chunk_size):
      indices = np.arange(first, min(first + chunk_size, len(reader)))
      chunk = decoder(reader.read(indices), indices)
      for key in keys:
        columns[key].append(chunk[key])
  finally:
    reader.close()

  def column(key):
    return np.concatenate(columns[key]) if columns[key] else np.zeros(0)

  def text(key):
    return np.array([_as_str(v) for v in column(key)], dtype=object)

  poses = None
  if POSE_KEY in keys:
    poses = column(POSE_KEY)
    if poses.dtype.kind in "SO":
      poses = text(POSE_KEY)
  return SplitMetadata(
      ids=text(ID_KEY), product_ids=text(PRODUCT_ID_KEY),
      categories=column(CATEGORY_KEY).astype(np.int32),
      subcategories=column(SUBCATEGORY_KEY).astype(np.int32), poses=poses)


class SplitView:
  """Images and captions of a split's records, looked up by record id.

  `images(ids)` -> uint8 [n, S, S, 3] and `input_ids(ids)` -> int32 [n, L],
  in the order of `ids`: the view the retrieval evaluation reads its queries
  and candidates from (`retrieval_sets.RecordView`).
  """

  def __init__(self, data_dir: str, name: str, split: str, *,
               image_size: int = DEFAULT_IMAGE_SIZE,
               metadata: SplitMetadata | None = None,
               decode_parallelism: int = DEFAULT_DECODE_PARALLELISM):
    prepared = open_split(os.fspath(data_dir), name, split)
    self._description = f"{prepared.dataset_dir} split {split!r}"
    self.metadata = metadata or read_metadata(data_dir, name, split)
    self._index_of = {record_id: i
                      for i, record_id in enumerate(self.metadata.ids)}
    if len(self._index_of) != len(self.metadata.ids):
      raise PreparedDatasetError(f"{self._description}: record ids are not unique.")
    self._reader = prepared.open_reader()
    self._image_decoder = ExampleDecoder(
        prepared.features, (IMAGE_KEY,), image_size=image_size,
        decode_parallelism=decode_parallelism, source=self._description)
    self._text_decoder = ExampleDecoder(
        prepared.features, (INPUT_IDS_KEY,), source=self._description)

  def __len__(self) -> int:
    return len(self._index_of)

  def __contains__(self, record_id: str) -> bool:
    return record_id in self._index_of

  def _indices(self, ids: Sequence[str]) -> list[int]:
    try:
      return [self._index_of[i] for i in ids]
    except KeyError as e:
      raise PreparedDatasetError(
          f"{self._description}: no record with id {e.args[0]!r}.") from None

  def images(self, ids: Sequence[str]) -> np.ndarray:
    indices = self._indices(ids)
    return self._image_decoder(self._reader.read(indices), indices)[IMAGE_KEY]

  def input_ids(self, ids: Sequence[str]) -> np.ndarray:
    indices = self._indices(ids)
    return self._text_decoder(
        self._reader.read(indices), indices)[INPUT_IDS_KEY]

  def close(self) -> None:
    self._reader.close()
