"""Decoding/drawing and preprocessing images in worker processes, in order.

Preparing a dataset spends most of its time on images (decoding, drawing the
synthetic ones, the white-margin crop, resizing); Python threads do not run
that in parallel, processes do. :class:`ImageWorkers` sends batches of images
to a process pool, keeps a bounded number of batches in flight (memory stays
flat however large the dataset) and gives the results back in input order,
so the prepared dataset is the same whatever the number of workers.

Workers are started with ``spawn``, never ``fork``: the preparing process
may hold threads (TensorFlow's, JAX's when training prepares the synthetic
demo), and a forked child of a multithreaded process can deadlock. A spawned
worker imports what it needs (PIL, numpy, the synthetic renderer) and, as
Python's ``spawn`` does, the caller's main module (about a second for
``python -m input_pipeline.prepare``: TensorFlow is imported lazily).
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from input_pipeline import image_ops
from input_pipeline.errors import BadRecordError

Key = TypeVar('Key')
# A source's image, or the reason it has none (kept in the main process).
ImageItem = Any  # image_ops.SourceImage | BadRecordError
StoredImage = Any  # np.ndarray | bytes | ImageDecodeError | BadRecordError

DEFAULT_BATCH_SIZE = 16
# Batches in flight per worker (bounds memory; keeps every worker busy).
BATCHES_IN_FLIGHT_PER_WORKER = 4


def default_num_workers() -> int:
  """The CPUs this process may use."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not on Linux.
    return os.cpu_count() or 1


class ImageWorkers:
  """Turns source images into stored images, in parallel, in order.

  Use as a context manager. With ``num_workers <= 1`` everything runs in the
  calling process.

  Args:
    spec: how images are stored.
    num_workers: worker processes.
    batch_size: images sent to a worker at once.
  """

  def __init__(
      self, spec: image_ops.StorageSpec, num_workers: int, batch_size: int = DEFAULT_BATCH_SIZE
  ):
    self._spec = spec
    self._num_workers = num_workers
    self._batch_size = batch_size
    self._pool: concurrent.futures.ProcessPoolExecutor | None = None

  def __enter__(self) -> 'ImageWorkers':
    if self._num_workers > 1:
      self._pool = concurrent.futures.ProcessPoolExecutor(
          max_workers=self._num_workers, mp_context=multiprocessing.get_context('spawn')
      )
    return self

  def __exit__(self, *exc_info) -> None:
    if self._pool is not None:
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None

  def process(self, items: Iterable[tuple[Key, ImageItem]]) -> Iterator[tuple[Key, StoredImage]]:
    """``(key, stored image or error)`` for each ``(key, image)``, in order.

    An item whose image is a :class:`BadRecordError` comes back unchanged.
    """
    parallel = self._pool is not None
    batch_size = self._batch_size if parallel else 1
    max_in_flight = BATCHES_IN_FLIGHT_PER_WORKER * self._num_workers if parallel else 1
    pending = collections.deque()
    batch = []
    for item in items:
      batch.append(item)
      if len(batch) == batch_size:
        pending.append(self._submit(batch))
        batch = []
        if len(pending) >= max_in_flight:
          yield from self._collect(*pending.popleft())
    if batch:
      pending.append(self._submit(batch))
    while pending:
      yield from self._collect(*pending.popleft())

  def _submit(
      self, batch: list[tuple[Key, ImageItem]]
  ) -> tuple[list[tuple[Key, ImageItem]], concurrent.futures.Future]:
    sendable = [image for _, image in batch if not isinstance(image, BadRecordError)]
    if self._pool is not None:
      return batch, self._pool.submit(image_ops.to_stored_images, sendable, self._spec)
    done = concurrent.futures.Future()
    done.set_result(image_ops.to_stored_images(sendable, self._spec))
    return batch, done

  @staticmethod
  def _collect(
      batch: list[tuple[Key, ImageItem]], future: concurrent.futures.Future
  ) -> Iterator[tuple[Key, StoredImage]]:
    results = iter(future.result())
    for key, image in batch:
      yield key, image if isinstance(image, BadRecordError) else next(results)
