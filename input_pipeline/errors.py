"""Errors raised while preparing or loading datasets, and the log of skipped records.

Every message names the file or record at fault and the reason, so that the
``prepare`` command can print it as is (no traceback).

Two kinds of problems exist:

* fatal ones (a missing file, an empty catalog, an h5 file without the expected
  datasets, a bad option): :class:`FatalInputError`, always raised;
* problems with one record (a corrupt image, an empty caption, ...):
  :class:`BadRecordError`. By default such a record is skipped and counted in a
  :class:`SkippedRecords` log (which ends up in the summary and in the dataset
  metadata); in strict mode the first one is raised.
"""

from __future__ import annotations

import collections
import dataclasses

from mvlt_jax.errors import MVLTError, printable  # pylint: disable=unused-import  (re-exported)


class PrepareError(MVLTError):
  """Base class of every error of the input pipeline with a user-facing message (a kind of
  ``MVLTError``, the one root of the errors users see).

  Its message is made :func:`printable` (one line, no control characters).
  """

  def __init__(self, message: object = ''):
    super().__init__(printable(message))


class FatalInputError(PrepareError):
  """The input as a whole cannot be prepared (missing file, empty catalog, ...)."""


class NotPreparedError(PrepareError):
  """A dataset was asked for that is not (completely) prepared in the data dir."""


class TokenizerError(PrepareError):
  """A tokenizer cannot be trained, read or saved."""


class ImageDecodeError(PrepareError):
  """An image cannot be read or decoded (corrupt, truncated, ...).

  ``reason``: the skip reason of its record (:data:`SKIP_REASONS`).
  """

  reason = 'corrupt_image'


class ImageTooLargeError(ImageDecodeError):
  """An image over the file size or pixel count limit (not read or not decoded)."""

  reason = 'image_too_large'


class UnsupportedImageFormatError(ImageDecodeError):
  """An image of a format outside ``image_ops.ACCEPTED_FORMATS`` (not decoded)."""

  reason = 'unsupported_format'


class SyntheticCatalogError(PrepareError):
  """A bad argument to the synthetic catalog, or a product it cannot render."""


# Reasons a record is skipped; the keys used in summaries and metadata.
SKIP_REASONS = (
    'missing_field',  # a required field is absent or empty
    'empty_caption',  # the caption is empty or only whitespace
    'not_utf8',  # the record's bytes are not valid UTF-8
    'invalid_record',  # a line that is not a JSON object, a malformed CSV row
    'unknown_category',  # category/sub-category outside the class list
    'duplicate_id',  # an id seen before (the first occurrence is kept)
    'missing_image',  # the image file does not exist
    'corrupt_image',  # the image cannot be decoded (corrupt, truncated, ...)
    'image_too_large',  # over max_image_bytes or max_image_pixels (not read / not decoded)
    'unsupported_format',  # an image format outside image_ops.ACCEPTED_FORMATS (not decoded)
)


class BadRecordError(PrepareError):
  """One record cannot be used.

  Attributes:
    where: the file and record it comes from, e.g. ``'train.jsonl line 12 (id
      "p1_0")'``.
    reason: one of :data:`SKIP_REASONS`.
    detail: a human readable explanation.
  """

  def __init__(self, where: str, reason: str, detail: str):
    if reason not in SKIP_REASONS:
      raise ValueError(f'unknown skip reason {reason!r}')
    self.where = where
    self.reason = reason
    self.detail = detail
    super().__init__(f'{where}: {detail} [{reason}]')


@dataclasses.dataclass
class SkippedRecords:
  """Counts the records skipped per split and reason.

  In strict mode :meth:`add` raises the error instead of counting it.

  Attributes:
    strict: raise the first bad record instead of skipping it.
    max_messages: how many messages of skipped records are kept verbatim.
  """

  strict: bool = False
  max_messages: int = 20
  counts: dict[str, collections.Counter] = dataclasses.field(
      default_factory=lambda: collections.defaultdict(collections.Counter)
  )
  messages: list[str] = dataclasses.field(default_factory=list)

  def add(self, split: str, error: BadRecordError) -> None:
    """Records that ``error``'s record of ``split`` is skipped (or raises it)."""
    if self.strict:
      raise error
    self.counts[split][error.reason] += 1
    if len(self.messages) < self.max_messages:
      self.messages.append(f'[{split}] {error}')

  @property
  def total(self) -> int:
    return sum(sum(c.values()) for c in self.counts.values())

  def as_dict(self) -> dict[str, dict[str, int]]:
    """``{split: {reason: count}}``, JSON serialisable, sorted."""
    return {
        split: dict(sorted(counter.items()))
        for split, counter in sorted(self.counts.items())
        if counter
    }
