"""Evaluation metrics as pure array functions: retrieval ranks, classification, image quality.

Everything here works on numpy arrays and imports neither JAX nor TensorFlow. The image
metrics (:func:`psnr`, :func:`ssim`, :func:`masked_mse`) only use array methods and
operators, so they also run inside a jit'd JAX function when given ``xp=jax.numpy``.

Conventions (each tested in ``tests/test_metrics.py``):

* **Ranks and ties** (:func:`partner_ranks`): ranks are 1-based. With ``ties='pessimistic'``
  (the default, and what the evaluation reports) the true partner ranks after every other
  candidate whose score is equal to or higher than its own; ``'optimistic'`` puts it before
  the candidates of equal score. The two agree exactly when no candidate ties with the
  partner, so their difference counts the queries whose rank depends on a tie.
* **R@K with K >= the number of candidates** is not applicable (``None``, null in JSON,
  "n/a" in tables): every partner ranks within K, so 100 % would measure nothing
  (:func:`recall_at_k` with ``num_candidates``; :func:`mean_and_std` of such values is
  ``(None, None)``).
* **Macro-F1** (:func:`classification_report`): the unweighted mean of the per-class F1
  over the classes that occur in the labels or in the predictions (sklearn's
  ``f1_score(average='macro')``). A class that occurs in neither is left out; a class that
  is only predicted, or only in the labels, has F1 = 0 (0/0 precision or recall is 0).
* **PSNR of identical images** is ``inf``; :func:`summarize_psnr` averages the finite values
  and counts the infinite ones.
* **PSNR on the release's scale** (:func:`psnr_release_scale`): the release computes PSNR
  with a peak of 255 on images in [0, 1], i.e. 10 log10(255^2 / MSE), which is the standard
  value plus :data:`RELEASE_PSNR_OFFSET_DB` = 20 log10(255) = 48.13 dB. Only this scale
  compares with the release's figures.
* **SSIM** is Wang et al. (2004) as ``tf.image.ssim`` computes it: an 11x11 Gaussian window
  (sigma 1.5), K1 = 0.01, K2 = 0.03, 'valid' filtering, the SSIM map averaged over space
  and channels. Identical images give 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

TIE_RULES = ('pessimistic', 'optimistic')
DEFAULT_RECALL_KS = (1, 5, 10)

# SSIM constants of Wang et al. (2004).
SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# What the release's PSNR adds to the standard one: its peak is 255 on images in [0, 1].
RELEASE_PSNR_PEAK = 255.0
RELEASE_PSNR_OFFSET_DB = 20.0 * math.log10(RELEASE_PSNR_PEAK)  # 48.1308... dB


# ----------------------------------------------------------------------------- retrieval


def partner_ranks(
    scores: np.ndarray,
    partner_index: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    ties: str = 'pessimistic',
) -> np.ndarray:
  """1-based rank of each query's true partner among its candidates.

  Args:
    scores: float [Q, C], higher = better match.
    partner_index: int [Q], the column of the true partner in each row.
    valid: optional bool [Q, C]; False marks padding columns, which never rank.
    ties: 'pessimistic' (partner after all candidates scoring >= its score) or
      'optimistic' (partner before candidates of equal score).

  Returns:
    int64 [Q] ranks in [1, number of valid candidates].

  Raises:
    ValueError: bad shapes, a partner index out of range or on a padding column, an
      unknown tie rule, or a NaN score among the valid candidates.
  """
  if ties not in TIE_RULES:
    raise ValueError(f'ties must be one of {TIE_RULES}, got {ties!r}.')
  scores = np.asarray(scores)
  partner_index = np.asarray(partner_index)
  if scores.ndim != 2 or partner_index.shape != scores.shape[:1]:
    raise ValueError(
        f'scores must be [Q, C] and partner_index [Q]; got {scores.shape} and '
        f'{partner_index.shape}.'
    )
  num_queries, num_candidates = scores.shape
  valid = np.ones(scores.shape, bool) if valid is None else np.asarray(valid, bool)
  if valid.shape != scores.shape:
    raise ValueError(f'valid must have the shape of scores {scores.shape}, got {valid.shape}.')
  if np.any((partner_index < 0) | (partner_index >= num_candidates)):
    raise ValueError(f'partner_index out of [0, {num_candidates}).')
  rows = np.arange(num_queries)
  if not np.all(valid[rows, partner_index]):
    raise ValueError('a partner_index points at a padding (invalid) candidate.')
  if np.any(np.isnan(scores) & valid):
    raise ValueError('scores hold NaN: the ranking is undefined.')
  partner_score = scores[rows, partner_index][:, None]  # [Q, 1]
  beats = scores >= partner_score if ties == 'pessimistic' else scores > partner_score
  others = valid.copy()
  others[rows, partner_index] = False
  return 1 + np.sum(beats & others, axis=1).astype(np.int64)


def recall_at_k(
    ranks: np.ndarray,
    ks: Sequence[int] = DEFAULT_RECALL_KS,
    num_candidates: int | None = None,
) -> dict[int, float | None]:
  """Share of queries whose partner ranks in the top K, for each K: ``{K: fraction}``.

  Ranks may be ``inf`` (partner not among the scored candidates: a miss at every K). With
  ``num_candidates`` (candidates per query), R@K for K >= num_candidates is ``None``: not
  applicable (every partner ranks within K; 100 % would measure nothing).
  """
  ranks = np.asarray(ranks, np.float64)
  if ranks.ndim != 1 or ranks.size == 0:
    raise ValueError(f'ranks must be a non-empty 1-D array, got shape {ranks.shape}.')
  if np.any(np.isnan(ranks)) or np.any(ranks < 1):
    raise ValueError('ranks must be >= 1 (1-based) and not NaN.')
  return {
      int(k): (
          None if num_candidates is not None and k >= num_candidates else float(np.mean(ranks <= k))
      )
      for k in ks
  }


def mean_and_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
  """Mean and sample standard deviation (ddof=1; 0.0 for a single value); ``(None, None)``
  when a value is ``None`` (not applicable)."""
  if any(value is None for value in values):
    return None, None
  values = np.asarray(values, np.float64)
  if values.size == 0:
    raise ValueError('mean_and_std of no values.')
  std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
  return float(np.mean(values)), std


# ----------------------------------------------------------------------------- classification


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [num_classes, num_classes]; entry [t, p] counts items of class t predicted p."""
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  if labels.shape != predictions.shape or labels.ndim != 1:
    raise ValueError(
        f'labels and predictions must be 1-D of one shape, got {labels.shape} '
        f'and {predictions.shape}.'
    )
  for name, values in (('labels', labels), ('predictions', predictions)):
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(
          f'{name} must lie in [0, {num_classes}); found ' f'[{values.min()}, {values.max()}].'
      )
  flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclasses.dataclass(frozen=True)
class ClassificationReport:
  """Accuracy, macro-F1 and the per-class scores of one classifier.

  The per-class arrays cover all ``num_classes``; ``present`` marks the classes that occur
  in the labels or the predictions (the ones macro-F1 averages over).
  """

  num_examples: int
  accuracy: float
  macro_f1: float
  precision: np.ndarray  # float [K]
  recall: np.ndarray  # float [K]
  f1: np.ndarray  # float [K]
  support: np.ndarray  # int [K]: items of the class in the labels
  predicted: np.ndarray  # int [K]: items predicted as the class
  present: np.ndarray  # bool [K]

  def per_class(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One dict per present class: index, name, support, predicted, precision, recall, f1."""
    rows = []
    for k in np.flatnonzero(self.present):
      rows.append(
          dict(
              index=int(k),
              name=class_names[k] if class_names else str(k),
              support=int(self.support[k]),
              predicted=int(self.predicted[k]),
              precision=float(self.precision[k]),
              recall=float(self.recall[k]),
              f1=float(self.f1[k]),
          )
      )
    return rows


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """numerator / denominator, 0 where the denominator is 0."""
  out = np.zeros(numerator.shape, np.float64)
  np.divide(numerator, denominator, out=out, where=denominator > 0)
  return out


def classification_report(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> ClassificationReport:
  """Accuracy, macro-F1 (see the module docstring) and per-class precision / recall / F1."""
  counts = confusion_matrix(labels, predictions, num_classes)
  total = int(counts.sum())
  if total == 0:
    raise ValueError('classification_report of no examples.')
  true_positives = np.diag(counts).astype(np.float64)
  support = counts.sum(axis=1)  # [K] per true class
  predicted = counts.sum(axis=0)  # [K] per predicted class
  precision = _safe_divide(true_positives, predicted)
  recall = _safe_divide(true_positives, support)
  f1 = _safe_divide(2 * precision * recall, precision + recall)
  present = (support > 0) | (predicted > 0)
  return ClassificationReport(
      num_examples=total,
      accuracy=float(true_positives.sum() / total),
      macro_f1=float(np.mean(f1[present])),
      precision=precision,
      recall=recall,
      f1=f1,
      support=support,
      predicted=predicted,
      present=present,
  )


# ----------------------------------------------------------------------------- images


def mse(a, b, xp: Any = np):
  """Mean squared error per image: [..., H, W, C] x2 -> [...]."""
  return xp.mean((a - b) ** 2, axis=(-3, -2, -1))


def masked_mse(a, b, pixel_mask, xp: Any = np):
  """Mean squared error per image over the pixels where ``pixel_mask`` [..., H, W] is True.

  An image without masked pixels gets 0.
  """
  weights = pixel_mask[..., None].astype(a.dtype)  # [..., H, W, 1]
  squared = xp.sum(weights * (a - b) ** 2, axis=(-3, -2, -1))
  count = xp.sum(weights, axis=(-3, -2, -1)) * a.shape[-1]
  return squared / xp.maximum(count, 1)


def psnr_from_mse(error, data_range: float = 1.0, xp: Any = np):
  """10 log10(range^2 / MSE) in dB; ``inf`` where the MSE is 0."""
  safe = xp.where(error > 0, error, 1)
  return xp.where(error > 0, 10.0 * xp.log10(data_range**2 / safe), xp.inf)


def psnr(a, b, data_range: float = 1.0, xp: Any = np):
  """Peak signal-to-noise ratio per image (dB): [..., H, W, C] x2 -> [...]."""
  return psnr_from_mse(mse(a, b, xp), data_range, xp)


def psnr_release_scale(standard_psnr):
  """The release's PSNR (peak 255 on images in [0, 1]) from the standard one (dB):
  ``standard + 20 log10(255)``. ``None`` stays ``None``; works on floats and arrays."""
  if standard_psnr is None:
    return None
  return standard_psnr + RELEASE_PSNR_OFFSET_DB


def summarize_psnr(values: np.ndarray) -> dict[str, Any]:
  """``{'mean': mean of the finite values (None if none), 'infinite': count}``."""
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  return {
      'mean': float(finite.mean()) if finite.size else None,
      'infinite': int(values.size - finite.size),
  }


def gaussian_window(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """A normalised 1-D Gaussian of ``size`` taps: float64 [size]."""
  offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  window = np.exp(-0.5 * (offsets / sigma) ** 2)
  return window / window.sum()


def _filter_valid(x, window: np.ndarray):
  """Separable 'valid' filtering of [..., H, W, C] with ``window`` along H and W."""
  size = len(window)
  height = x.shape[-3] - size + 1
  width = x.shape[-2] - size + 1
  rows = sum(float(w) * x[..., i : i + height, :, :] for i, w in enumerate(window))
  return sum(float(w) * rows[..., :, i : i + width, :] for i, w in enumerate(window))


def ssim(
    a,
    b,
    data_range: float = 1.0,
    *,
    window_size: int = SSIM_WINDOW_SIZE,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
    xp: Any = np,
):
  """Structural similarity per image: [..., H, W, C] x2 -> [...] (see the module docstring)."""
  if a.shape != b.shape:
    raise ValueError(f'ssim of images of different shapes {a.shape} and {b.shape}.')
  if min(a.shape[-3], a.shape[-2]) < window_size:
    raise ValueError(
        f'ssim needs images of at least {window_size}x{window_size} pixels, '
        f'got {a.shape[-3]}x{a.shape[-2]}.'
    )
  window = gaussian_window(window_size, sigma)
  c1 = (k1 * data_range) ** 2
  c2 = (k2 * data_range) ** 2
  mean_a = _filter_valid(a, window)
  mean_b = _filter_valid(b, window)
  var_a = _filter_valid(a * a, window) - mean_a**2
  var_b = _filter_valid(b * b, window) - mean_b**2
  covariance = _filter_valid(a * b, window) - mean_a * mean_b
  luminance = (2 * mean_a * mean_b + c1) / (mean_a**2 + mean_b**2 + c1)
  structure = (2 * covariance + c2) / (var_a + var_b + c2)
  return xp.mean(luminance * structure, axis=(-3, -2, -1))


def as_json_number(value: Any) -> Any:
  """A float for JSON: ``None`` for inf / NaN (JSON has neither)."""
  value = float(value)
  return value if np.isfinite(value) else None


def recalls_by_name(recalls: Mapping[int, float | None]) -> dict[str, float | None]:
  """``{1: 0.3, 5: 0.7, 10: None}`` -> ``{'r1': 0.3, 'r5': 0.7, 'r10': None}``."""
  return {f'r{k}': None if v is None else float(v) for k, v in recalls.items()}
