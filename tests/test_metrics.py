"""Metric functions (mvlt_jax.metrics) on hand-computed cases."""

import math

import numpy as np
import pytest

from mvlt_jax import metrics

# ----------------------------------------------------------------------------- ranks


def test_ranks_with_ties_pessimistic_and_optimistic():
  scores = np.array(
      [
          [0.5, 0.9, 0.5, 0.1],  # partner 0 ties with column 2, below column 1
          [0.2, 0.3, 0.4, 0.9],  # partner 3 is the unique best
          [0.7, 0.7, 0.7, 0.7],
      ]
  )  # everything ties
  partner = np.array([0, 3, 2])
  np.testing.assert_array_equal(metrics.partner_ranks(scores, partner), [3, 1, 4])
  np.testing.assert_array_equal(
      metrics.partner_ranks(scores, partner, ties='optimistic'), [2, 1, 1]
  )


def test_padding_candidates_never_rank():
  scores = np.array([[0.1, 0.5, 9.0, 0.3]])
  valid = np.array([[True, True, False, True]])
  assert metrics.partner_ranks(scores, np.array([1]), valid=valid)[0] == 1
  assert metrics.partner_ranks(scores, np.array([1]))[0] == 2  # counted when valid


def test_recall_at_k_boundaries():
  ranks = np.array([1, 5, 6, 10, 11, np.inf])
  recalls = metrics.recall_at_k(ranks, (1, 5, 10))
  assert recalls == {1: 1 / 6, 5: 2 / 6, 10: 4 / 6}
  assert metrics.recalls_by_name(recalls) == {'r1': 1 / 6, 'r5': 2 / 6, 'r10': 4 / 6}


def test_recall_at_k_of_k_at_least_the_candidates_is_not_applicable():
  ranks = np.array([1, 2, 5, 5])
  recalls = metrics.recall_at_k(ranks, (1, 4, 5, 10), num_candidates=5)
  assert recalls == {1: 0.25, 4: 0.5, 5: None, 10: None}  # not 100 %: every partner ranks <= 5
  assert metrics.recalls_by_name(recalls) == {'r1': 0.25, 'r4': 0.5, 'r5': None, 'r10': None}
  assert metrics.mean_and_std([None, None]) == (None, None)
  assert metrics.recall_at_k(ranks, (5,)) == {5: 1.0}  # without num_candidates, as before


@pytest.mark.parametrize(
    'kwargs,message',
    [
        (dict(scores=np.array([[0.1, np.nan]]), partner_index=np.array([0])), 'NaN'),
        (dict(scores=np.zeros((1, 3)), partner_index=np.array([3])), 'out of'),
        (
            dict(
                scores=np.zeros((1, 3)),
                partner_index=np.array([0]),
                valid=np.array([[False, True, True]]),
            ),
            'padding',
        ),
        (dict(scores=np.zeros((1, 3)), partner_index=np.array([0]), ties='average'), 'ties'),
        (dict(scores=np.zeros(3), partner_index=np.array([0])), 'must be'),
    ],
)
def test_rank_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    metrics.partner_ranks(**kwargs)


def test_recall_of_no_queries_is_an_error():
  with pytest.raises(ValueError):
    metrics.recall_at_k(np.array([]))
  with pytest.raises(ValueError):
    metrics.recall_at_k(np.array([0, 1]))  # ranks are 1-based


def test_mean_and_sample_std():
  mean, std = metrics.mean_and_std([0.2, 0.4])
  assert mean == pytest.approx(0.3)
  assert std == pytest.approx(math.sqrt(0.02))
  assert metrics.mean_and_std([0.5]) == (0.5, 0.0)


# ----------------------------------------------------------------------------- classification


def test_classification_report_hand_computed_with_absent_classes():
  labels = np.array([0, 0, 1, 1, 2])
  predictions = np.array([0, 1, 1, 1, 3])  # class 3 only predicted, class 4 nowhere
  report = metrics.classification_report(labels, predictions, num_classes=5)
  assert report.accuracy == pytest.approx(3 / 5)
  np.testing.assert_array_equal(report.present, [True, True, True, True, False])
  np.testing.assert_allclose(report.precision, [1.0, 2 / 3, 0.0, 0.0, 0.0])
  np.testing.assert_allclose(report.recall, [0.5, 1.0, 0.0, 0.0, 0.0])
  np.testing.assert_allclose(report.f1, [2 / 3, 0.8, 0.0, 0.0, 0.0])
  # Mean over the 4 classes present in labels or predictions; class 4 is left out.
  assert report.macro_f1 == pytest.approx((2 / 3 + 0.8) / 4)
  np.testing.assert_array_equal(report.support, [2, 2, 1, 0, 0])
  np.testing.assert_array_equal(report.predicted, [1, 3, 0, 1, 0])
  rows = report.per_class(['a', 'b', 'c', 'd', 'e'])
  assert [r['name'] for r in rows] == ['a', 'b', 'c', 'd']
  assert rows[1] == dict(
      index=1,
      name='b',
      support=2,
      predicted=3,
      precision=pytest.approx(2 / 3),
      recall=1.0,
      f1=pytest.approx(0.8),
  )


def test_perfect_classifier():
  labels = np.array([2, 0, 2, 1])
  report = metrics.classification_report(labels, labels, num_classes=4)
  assert report.accuracy == 1.0 and report.macro_f1 == 1.0
  assert report.present.sum() == 3


def test_confusion_matrix_and_label_range():
  counts = metrics.confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), 2)
  np.testing.assert_array_equal(counts, [[0, 1], [1, 1]])
  with pytest.raises(ValueError, match='labels must lie'):
    metrics.confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)
  with pytest.raises(ValueError, match='no examples'):
    metrics.classification_report(np.zeros(0, int), np.zeros(0, int), 2)


# ----------------------------------------------------------------------------- images


def test_psnr_known_values_and_identical_images():
  a = np.full((2, 16, 16, 3), 0.5)
  b = np.stack([np.full((16, 16, 3), 0.6), np.full((16, 16, 3), 0.5)])
  np.testing.assert_allclose(metrics.psnr(b, a), [20.0, np.inf])  # MSE 0.01 -> 20 dB
  assert metrics.psnr(a * 255, b * 255, data_range=255.0)[0] == pytest.approx(20.0)
  assert metrics.summarize_psnr(metrics.psnr(b, a)) == {'mean': pytest.approx(20.0), 'infinite': 1}
  assert metrics.summarize_psnr(np.array([np.inf])) == {'mean': None, 'infinite': 1}
  assert metrics.as_json_number(np.inf) is None


def test_psnr_on_the_release_scale():
  """The release's PSNR (peak 255 on images in [0, 1]) = the standard one + 20 log10(255)."""
  offset = 20 * math.log10(255)
  assert metrics.RELEASE_PSNR_OFFSET_DB == offset
  assert round(offset, 2) == 48.13
  for standard in (20.0, 15.4, -3.0):
    assert metrics.psnr_release_scale(standard) == standard + offset
  assert metrics.psnr_release_scale(None) is None
  # It is what the release's formula computes: 10 log10(255^2 / MSE) on images in [0, 1].
  a = np.full((2, 16, 16, 3), 0.5)
  b = np.stack([np.full((16, 16, 3), 0.6), np.full((16, 16, 3), 0.3)])
  standard = metrics.psnr(b, a)
  np.testing.assert_array_equal(metrics.psnr_release_scale(standard), standard + offset)
  np.testing.assert_allclose(
      metrics.psnr_release_scale(standard), metrics.psnr(b, a, data_range=255.0), rtol=0, atol=1e-12
  )


def test_masked_mse():
  a = np.zeros((1, 2, 2, 3))
  b = np.zeros((1, 2, 2, 3))
  b[0, 0, 0] = 1.0  # one pixel differs, by 1 in every channel
  mask = np.array([[[True, True], [False, False]]])
  np.testing.assert_allclose(metrics.masked_mse(a, b, mask), [0.5])  # 3 of 6 values
  np.testing.assert_allclose(metrics.masked_mse(a, b, ~mask), [0.0])
  np.testing.assert_allclose(metrics.mse(a, b), [0.25])


def test_ssim_identical_and_constant_images():
  rng = np.random.default_rng(0)
  image = rng.random((2, 24, 20, 3))
  np.testing.assert_allclose(metrics.ssim(image, image), [1.0, 1.0], atol=1e-12)
  # Constant images: no variance, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
  a, b = 0.3, 0.7
  c1 = (metrics.SSIM_K1 * 1.0) ** 2
  expected = (2 * a * b + c1) / (a * a + b * b + c1)
  value = metrics.ssim(np.full((1, 16, 16, 1), a), np.full((1, 16, 16, 1), b))
  np.testing.assert_allclose(value, [expected], rtol=1e-10)
  with pytest.raises(ValueError, match='at least 11x11'):
    metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_ssim_matches_tensorflow():
  tf = pytest.importorskip('tensorflow')
  rng = np.random.default_rng(1)
  a = rng.random((3, 32, 40, 3))
  b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
  np.testing.assert_allclose(metrics.ssim(a, b), tf.image.ssim(a, b, 1.0).numpy(), atol=1e-5)
  np.testing.assert_allclose(metrics.psnr(a, b), tf.image.psnr(a, b, 1.0).numpy(), atol=1e-4)


def test_image_metrics_run_in_jax():
  jax = pytest.importorskip('jax')
  jnp = jax.numpy
  rng = np.random.default_rng(2)
  a = rng.random((2, 16, 16, 3)).astype(np.float32)
  b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
  mask = rng.random((2, 16, 16)) < 0.5
  ours = jax.jit(
      lambda x, y, m: (
          metrics.ssim(x, y, xp=jnp),
          metrics.psnr(x, y, xp=jnp),
          metrics.masked_mse(x, y, m, xp=jnp),
          metrics.psnr(x, x, xp=jnp),
      )
  )(a, b, mask)
  np.testing.assert_allclose(ours[0], metrics.ssim(a.astype(np.float64), b), atol=1e-5)
  np.testing.assert_allclose(ours[1], metrics.psnr(a.astype(np.float64), b), atol=1e-3)
  np.testing.assert_allclose(ours[2], metrics.masked_mse(a.astype(np.float64), b, mask), rtol=1e-5)
  assert np.all(np.isinf(ours[3]))
