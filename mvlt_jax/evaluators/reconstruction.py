"""Masked image generation: PSNR / SSIM with fixed seeded masks, and a picture.

Task ``reconstruct``; the masking protocol is in docs/evaluation.md.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mvlt_jax import masking, metrics
from mvlt_jax.evaluators import common
from mvlt_jax.steps import images_to_float


def mask_items(
    images: jax.Array, record_index: jax.Array, *, seed: int, masking_config
) -> tuple[jax.Array, jax.Array]:
  """Masks each image as pre-training does, with a key of ``(seed, its record index)`` only.

  An item therefore gets the same mask whatever batch, batch position or host it is in.
  images float [B, H, W, 3], record_index int [B] -> (masked [B, H, W, 3], cells
  [B, H/unit, W/unit] bool).
  """
  base = jax.random.key(seed)

  def mask_one(index, image):
    masked, cells = masking.mask_image_grid(
        jax.random.fold_in(base, index),
        image[None],
        unit=masking_config.image_unit,
        ratio=masking_config.image_ratio,
        fill=masking_config.image_fill,
        distribution=masking_config.get('image_distribution', 'exact'),
    )
    return masked[0], cells[0]

  return jax.vmap(mask_one)(record_index, images)


def to_uint8(images: jax.Array) -> jax.Array:
  return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def make_reconstruction_step(model, masking_config, seed: int) -> Callable:
  """``(variables, images uint8, input_ids, record_index) -> per-image metrics and pictures``.

  Each image is masked with the key of its record index (see :func:`mask_items`).
  """
  unit = masking_config.image_unit

  def step(variables, images, input_ids, record_index):
    images = images_to_float(images)  # [B, H, W, 3]
    masked, cells = mask_items(images, record_index, seed=seed, masking_config=masking_config)
    out = model.apply(variables, masked, input_ids, train=False)
    reconstruction = jnp.clip(out['reconstruction'], 0.0, 1.0)  # [B, H, W, 3]
    pixel_mask = jnp.repeat(jnp.repeat(cells, unit, axis=1), unit, axis=2)  # [B, H, W]
    masked_region = metrics.masked_mse(reconstruction, images, pixel_mask, xp=jnp)
    return {
        'mse': metrics.mse(reconstruction, images, xp=jnp),
        'psnr': metrics.psnr(reconstruction, images, xp=jnp),
        'psnr_masked_region': metrics.psnr_from_mse(masked_region, xp=jnp),
        'ssim': metrics.ssim(reconstruction, images, xp=jnp),
        'input_psnr': metrics.psnr(masked, images, xp=jnp),
        'input_psnr_masked_region': metrics.psnr_from_mse(
            metrics.masked_mse(masked, images, pixel_mask, xp=jnp), xp=jnp
        ),
        'input_ssim': metrics.ssim(masked, images, xp=jnp),
        'original': to_uint8(images),
        'masked': to_uint8(masked),
        'reconstruction': to_uint8(reconstruction),
    }

  return jax.jit(step)


RELEASE_SCALE_NOTE = (
    "psnr_release_scale = psnr + 20 log10(255) = psnr + 48.13 dB: the release's PSNR (peak "
    "255 on images in [0, 1]); only it compares with the release's figures."
)
_IMAGE_METRICS = (
    'psnr',
    'psnr_masked_region',
    'ssim',
    'input_psnr',
    'input_psnr_masked_region',
    'input_ssim',
    'mse',
)
_PICTURE_KEYS = ('original', 'masked', 'reconstruction')


def picture_grid(columns: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
  """Rows of items, one column per array of ``columns`` (uint8 [N, H, W, 3] each), with
  white gaps of ``gap`` pixels: uint8 [N*(H+gap)-gap, C*(W+gap)-gap, 3]."""
  count, height, width, _ = columns[0].shape
  grid = np.full(
      (count * (height + gap) - gap, len(columns) * (width + gap) - gap, 3), 255, np.uint8
  )
  for c, images in enumerate(columns):
    for r in range(count):
      top, left = r * (height + gap), c * (width + gap)
      grid[top : top + height, left : left + width] = images[r]
  return grid


_PICTURE_LABELS = {
    'original': 'original',
    'masked': 'masked input',
    'reconstruction': 'reconstruction',
}


def labelled_picture(
    columns: Sequence[np.ndarray], labels: Sequence[str], cell_pixels: int, gap: int = 4
) -> np.ndarray:
  """``picture_grid`` with each image enlarged (nearest neighbour, a whole factor) to at least
  ``cell_pixels`` per side, and a row of column labels above: uint8 [H', W', 3]."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=import-outside-toplevel

  height = columns[0].shape[1]
  factor = max(1, -(-cell_pixels // height))
  enlarged = [np.repeat(np.repeat(images, factor, axis=1), factor, axis=2) for images in columns]
  grid = picture_grid(enlarged, gap=gap)
  font_size = max(12, min(24, height * factor // 10))
  header = font_size + 2 * gap
  canvas = Image.new('RGB', (grid.shape[1], grid.shape[0] + header), (255, 255, 255))
  canvas.paste(Image.fromarray(grid), (0, header))
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default(size=font_size)
  cell = height * factor + gap
  for c, label in enumerate(labels):
    text_width = draw.textlength(label, font=font)
    draw.text(
        (c * cell + (height * factor - text_width) / 2, gap), label, fill=(0, 0, 0), font=font
    )
  return np.asarray(canvas)


def run_reconstruction(
    config, loaded: common.LoadedCheckpoint, data: common.EvalSplit, picture_path: Optional[str]
) -> dict[str, Any]:
  """PSNR / SSIM with fixed seeded masks, and the picture of the first records."""
  ev = config.eval
  masking_config = loaded.masking_config or config.masking
  unit = masking_config.image_unit
  if data.image_size % unit:
    raise common.EvaluationError(
        f'image size {data.image_size} is not a multiple of ' f'masking.image_unit={unit}.'
    )
  runner = common.LocalRunner(loaded.variables)
  step = make_reconstruction_step(loaded.model(('mir',), ev.dtype), masking_config, ev.mask_seed)
  start = time.perf_counter()
  rows, pictures = common.run_over_split(
      config,
      data,
      runner,
      step,
      input_keys=('images', 'input_ids'),
      output_keys=_IMAGE_METRICS,
      picture_keys=_PICTURE_KEYS,
      num_pictures=ev.num_pictures,
      vocab_size=loaded.model_config.vocab_size,
  )
  seconds = time.perf_counter() - start
  if not rows or len(rows['record_index']) == 0:
    raise common.EvaluationError(f'{data.description} has no records to evaluate.')
  psnr = metrics.summarize_psnr(rows['psnr'])
  input_psnr = metrics.summarize_psnr(rows['input_psnr'])['mean']
  result = {
      'examples': int(len(rows['record_index'])),
      'seconds': seconds,
      'mask': {
          'unit': unit,
          'ratio': masking_config.image_ratio,
          'distribution': masking_config.get('image_distribution', 'exact'),
          'fill': masking_config.image_fill,
          'seed': ev.mask_seed,
          'keyed_by': 'record index in the split',
      },
      'psnr': psnr['mean'],
      'psnr_release_scale': metrics.psnr_release_scale(psnr['mean']),
      'psnr_release_scale_note': RELEASE_SCALE_NOTE,
      'identical_images': psnr['infinite'],
      'psnr_of_mean_mse': metrics.as_json_number(
          metrics.psnr_from_mse(np.mean(rows['mse'], dtype=np.float64))
      ),
      'psnr_masked_region': metrics.summarize_psnr(rows['psnr_masked_region'])['mean'],
      'ssim': float(np.mean(rows['ssim'], dtype=np.float64)),
      'masked_input': {
          'psnr': input_psnr,
          'psnr_release_scale': metrics.psnr_release_scale(input_psnr),
          'psnr_masked_region': metrics.summarize_psnr(rows['input_psnr_masked_region'])['mean'],
          'ssim': float(np.mean(rows['input_ssim'], dtype=np.float64)),
      },
  }
  if picture_path and pictures and len(pictures['record_index']):
    if jax.process_index() == 0:
      from PIL import Image  # pylint: disable=import-outside-toplevel

      os.makedirs(os.path.dirname(picture_path), exist_ok=True)
      picture = labelled_picture(
          [pictures[key] for key in _PICTURE_KEYS],
          [_PICTURE_LABELS[key] for key in _PICTURE_KEYS],
          cell_pixels=ev.get('picture_cell_pixels', 192),
      )
      Image.fromarray(picture).save(picture_path)
    result['picture'] = {
        'path': picture_path,
        'records': pictures['record_index'].tolist(),
        'columns': list(_PICTURE_KEYS),
    }
  return result


# ----------------------------------------------------------------------------- output


def format_reconstruction(result: dict) -> str:
  number = lambda value, digits: '-' if value is None else f'{value:.{digits}f}'
  mask = result['mask']
  rows = []
  for name, scores in (
      ('reconstruction', result),
      ('masked input (no model)', result['masked_input']),
  ):
    rows.append(
        [
            name,
            number(scores['psnr'], 2),
            number(scores['psnr_release_scale'], 2),
            number(scores['psnr_masked_region'], 2),
            number(scores['ssim'], 4),
        ]
    )
  header = ['', 'PSNR (dB)', 'PSNR, release scale (dB)', 'PSNR masked units (dB)', 'SSIM']
  share = (
      f'{mask["ratio"]:.0%}'
      if mask.get('distribution', 'exact') == 'exact'
      else f'on average {mask["ratio"]:.0%} (the release\'s generator)'
  )
  text = (
      f'Masked image generation: {result["examples"]} images, {share} of '
      f'{mask["unit"]}x{mask["unit"]} units masked (seed {mask["seed"]}), checkpoint step '
      f'{result.get("step", "?")}\n\n'
      + common.markdown_table(header, rows)
      + '\n\nPSNR, release scale = PSNR + 20 log10(255) = PSNR + 48.13 dB: the release '
      'computes PSNR with a peak of 255 on images in [0, 1]; only this column compares '
      "with the release's figures."
  )
  if 'picture' in result:
    text += f'\n\nPicture (original | masked | reconstruction): {result["picture"]["path"]}'
  return text


# ----------------------------------------------------------------------------- task


def reconstruct(config, workdir: str) -> dict[str, Any]:
  """Task ``reconstruct``: ``results/reconstruction.json`` and ``results/reconstruction.png``."""
  common.maybe_initialize_distributed(config)
  config, loaded, data = common.prepare_evaluation(config, workdir, ('mir',))
  picture = os.path.join(workdir, common.RESULTS_DIR, 'reconstruction.png')
  result = {
      **common.result_header(config, loaded, data, 'reconstruct'),
      **run_reconstruction(config, loaded, data, picture),
  }
  common.finish(workdir, 'reconstruction', result, format_reconstruction(result))
  return result
