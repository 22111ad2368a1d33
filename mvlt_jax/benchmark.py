"""Training throughput: times the jit'd training step on synthetic device-resident batches.

  python -m mvlt_jax.benchmark --config=configs/pretrain.py --config.global_batch_size=150 \
      [--config.KEY=VALUE ...] [--steps=30] [--warmup=5]

The step is the one ``main.py`` trains with (``steps.make_train_step``: on-device masking,
forward, backward, AdamW update), jit'd with the same shardings and state donation as
``train.py``. One synthetic batch (random uint8 images, captions ``[CLS] words [SEP]
[PAD]...``, random ITM labels) is generated on the mesh once and fed to every step, so the
figures measure the accelerator, not the input pipeline. The program prints ONE JSON line
(keys: ``RESULT_KEYS`` and a few extras); see docs/performance.md. No TensorFlow is imported.

FLOPs are counted as the project's reference PERFORMANCE.md counts them (forward + backward, the MLM
decoder over ALL positions, multiply-add = 2 FLOPs): XLA's cost analysis of the HLO of the
full-logits step (``masking.mlm_max_predictions=0``, no remat), lowered for the CPU (it is
never run), per example = the difference between batch 2 and batch 1, which removes the
batch-independent optimizer update. ``mfu`` is the achieved rate of those FLOPs against the
device's peak dense bf16 matrix rate (``PEAK_BF16_TFLOPS``).
"""

import functools
import json
import os
import statistics
import sys
import time
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from input_pipeline.tokenizer import BERT_UNCASED_SPECIAL_IDS, SENTENCEPIECE_SPECIAL_IDS
from mvlt_jax import distributed, optim, sharding, steps
from mvlt_jax.errors import ConfigError, MVLTError
from mvlt_jax.masking import TokenSpec
from mvlt_jax.models import build_model, remat_policy, word_embedding_grad
from mvlt_jax.models.mvlt import ATTRIBUTE_LABELS
from mvlt_jax.train_state import create_train_state

# The keys every result has (extras: see ``run_benchmark``).
RESULT_KEYS = (
    'model',
    'image_size',
    'text_length',
    'global_batch_size',
    'devices',
    'device_kind',
    'dtype',
    'step_time_s',
    'examples_per_s',
    'flops_per_example',
    'mfu',
    'peak_memory_gib',
)

# Peak dense (no sparsity) bf16 matrix rate per device in TFLOP/s, from the vendors' data
# sheets, matched as a substring of ``device.device_kind`` in this order (first match wins).
PEAK_BF16_TFLOPS = (
    ('H100 PCIe', 756.0),
    ('H100 NVL', 835.0),
    ('H100', 989.4),  # SXM ('NVIDIA H100 80GB HBM3')
    ('H200', 989.4),
    ('A100', 312.0),
    ('TPU v4', 275.0),
    ('TPU v5 lite', 197.0),  # v5e
    ('TPU v5e', 197.0),
    ('TPU v5p', 459.0),
    ('TPU v5', 459.0),  # v5p reports 'TPU v5'
    ('TPU v6 lite', 918.0),  # v6e (Trillium)
    ('TPU v6e', 918.0),
)

GIB = 2**30
PROFILED_STEPS = 5  # steps traced by --profile_dir


class CaptionIds(NamedTuple):
  """Special token ids of the synthetic captions."""

  pad: int
  unk: int
  cls: int
  sep: int
  mask: int

  @property
  def first_regular_id(self) -> int:
    return max(self) + 1

  def token_spec(self, vocab_size: int) -> TokenSpec:
    return TokenSpec(vocab_size, tuple(sorted(self)), self.mask)


# BERT uncased WordPiece (the release's tokenizer), and 0..4 (SentencePiece's) for vocabularies
# too small for it.
BERT_IDS = CaptionIds(**BERT_UNCASED_SPECIAL_IDS.as_dict())
COMPACT_IDS = CaptionIds(**SENTENCEPIECE_SPECIAL_IDS.as_dict())


def caption_ids_for(vocab_size: int) -> CaptionIds:
  """BERT's special ids when the vocabulary has room for them, else 0..4."""
  for ids in (BERT_IDS, COMPACT_IDS):
    if vocab_size > ids.first_regular_id:
      return ids
  raise ConfigError(
      f'config.model.vocab_size={vocab_size}: the synthetic captions need '
      f'regular tokens besides the special ids 0..{COMPACT_IDS.mask} (and no '
      'dataset fills in 0 here); give --config.model.vocab_size > '
      f'{COMPACT_IDS.first_regular_id}.'
  )


def synthetic_batch(
    rng: jax.Array,
    *,
    batch_size: int,
    image_size: int,
    text_length: int,
    vocab_size: int,
    ids: CaptionIds,
    caption_tokens: tuple[int, int],
    num_main_classes: int = 0,
    num_sub_classes: int = 0,
    attribute_classes: tuple[int, ...] = (),
) -> steps.Batch:
  """A random training batch shaped like the pipeline's (pure, jit-able).

  Captions are ``[CLS] w_1 .. w_n [SEP] [PAD] ...`` with n uniform in ``caption_tokens``
  (inclusive, capped at ``text_length - 2``) and regular word ids. Recognition labels are
  added when the class counts are given, attribute labels when ``attribute_classes`` is.
  """
  image_rng, length_rng, word_rng, itm_rng, main_rng, sub_rng, attribute_rng = jax.random.split(
      rng, 7
  )
  low, high = (min(n, text_length - 2) for n in caption_tokens)
  images = jax.random.randint(
      image_rng, (batch_size, image_size, image_size, 3), 0, 256, jnp.int32
  ).astype(
      jnp.uint8
  )  # [B, H, W, 3]
  lengths = jax.random.randint(length_rng, (batch_size, 1), low, high + 1)  # [B, 1]
  words = jax.random.randint(
      word_rng, (batch_size, text_length), ids.first_regular_id, vocab_size, jnp.int32
  )
  position = jnp.arange(text_length)[None]  # [1, L]
  input_ids = jnp.where(
      position == 0,
      ids.cls,
      jnp.where(position <= lengths, words, jnp.where(position == lengths + 1, ids.sep, ids.pad)),
  )
  batch = dict(
      images=images,
      input_ids=input_ids.astype(jnp.int32),
      itm_labels=jax.random.randint(itm_rng, (batch_size,), 0, 2, jnp.int32),
  )
  if num_main_classes and num_sub_classes:
    batch['main_labels'] = jax.random.randint(
        main_rng, (batch_size,), 0, num_main_classes, jnp.int32
    )
    batch['sub_labels'] = jax.random.randint(sub_rng, (batch_size,), 0, num_sub_classes, jnp.int32)
  if attribute_classes:
    label_keys = sorted(set(ATTRIBUTE_LABELS.values()))
    for key_rng, key in zip(jax.random.split(attribute_rng, len(label_keys)), label_keys):
      batch[key] = jax.random.randint(
          key_rng,
          (batch_size, len(attribute_classes)),
          0,
          jnp.asarray(attribute_classes, jnp.int32),
          jnp.int32,
      )  # [B, K]
  return batch


def peak_tflops_for(device_kind: str) -> Optional[float]:
  """The table's peak dense bf16 TFLOP/s of a device kind, None when unknown (e.g. CPU)."""
  for name, tflops in PEAK_BF16_TFLOPS:
    if name.lower() in device_kind.lower():
      return tflops
  return None


def _make_step(model, config, token_spec: TokenSpec, num_steps: int):
  """(train_step, optimizer) of ``config``; the schedule's shape does not affect the timing."""
  schedule = optim.learning_rate_schedule(
      config.optimizer,
      config.global_batch_size,
      steps_per_epoch=max(num_steps, 1),
      total_steps=max(num_steps, 1),
  )
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  return steps.make_train_step(model, config, token_spec, optimizer, schedule), optimizer


def _abstract_batch(config, batch_size: int, device_sharding) -> steps.Batch:
  size, length = config.model.image_size, config.model.text_length
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=device_sharding)
  batch = dict(
      images=spec((batch_size, size, size, 3), jnp.uint8),
      input_ids=spec((batch_size, length), jnp.int32),
      itm_labels=spec((batch_size,), jnp.int32),
  )
  if 'recognition' in config.model.heads:
    batch['main_labels'] = spec((batch_size,), jnp.int32)
    batch['sub_labels'] = spec((batch_size,), jnp.int32)
  if 'attributes' in config.model.heads:
    for key in set(ATTRIBUTE_LABELS.values()):
      batch[key] = spec((batch_size, len(config.model.attribute_classes)), jnp.int32)
  return batch


def step_flops(config, token_spec: TokenSpec, batch_size: int, optimized: bool = False) -> float:
  """XLA's FLOP count of one training step of ``config`` at ``batch_size`` (never run).

  Lowered for a CPU device, where the cost analysis of the un-optimised HLO is available
  without compiling (accelerator plugins only offer it after compilation, and do not count
  custom calls such as cuDNN attention or cuBLAS GEMMs reliably). ``optimized``: count the
  compiled (optimised) CPU program instead, which takes much longer.
  """
  try:
    device = jax.devices('cpu')[0]
  except RuntimeError:  # the CPU backend is disabled (JAX_PLATFORMS): use the default one
    device = jax.devices()[0]
  device_sharding = jax.sharding.SingleDeviceSharding(device)
  model = build_model(config.model)
  train_step, optimizer = _make_step(model, config, token_spec, num_steps=1)
  abstract_state = jax.eval_shape(functools.partial(create_train_state, model, config, optimizer))
  abstract_state = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device_sharding),
      abstract_state,
  )
  lowered = jax.jit(train_step).lower(
      abstract_state, _abstract_batch(config, batch_size, device_sharding)
  )
  costs = None if optimized else lowered.cost_analysis()
  if not costs or 'flops' not in costs:
    costs = lowered.compile().cost_analysis()
  if isinstance(costs, (list, tuple)):  # older jax: one dict per computation
    costs = costs[0]
  return float(costs['flops'])


def flops_per_example(
    config,
    token_spec: TokenSpec,
    *,
    full_logits: bool = True,
    batch_sizes: tuple[int, int] = (1, 2),
    optimized: bool = False,
) -> float:
  """Model FLOPs per example of a training step, forward + backward.

  ``full_logits``: the MLM decoder over every position (the release's cost, as counted in
  PERFORMANCE.md) and no rematerialisation; else the step as configured (masked-position
  MLM, remat recomputation included). The slope between two batch sizes removes the
  batch-independent optimizer update. Attention is counted as plain XLA matrix products
  (cuDNN computes the same products). ``optimized``: see ``step_flops``.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.dtype = 'float32'  # FLOPs do not depend on it; avoids counting casts
  config.model.attention_impl = 'xla'
  if full_logits:
    config.masking.mlm_max_predictions = 0
    config.model.remat = False
    config.model.word_embedding_grad = 'scatter'  # an index operation: no FLOPs, as PyTorch
  else:  # what the default backend runs, although the count lowers for the CPU
    config.model.word_embedding_grad = word_embedding_grad(config.model)
  small, large = batch_sizes
  count = functools.partial(step_flops, config, token_spec, optimized=optimized)
  difference = count(large) - count(small)
  return difference / (large - small)


def count_flop_figures(config, token_spec: TokenSpec) -> tuple[float, float]:
  """(FLOPs per example with full MLM logits, FLOPs per example of the step as configured)."""
  logging.info('Counting FLOPs ...')
  full = flops_per_example(config, token_spec, full_logits=True)
  configured_as_full = (
      config.masking.mlm_max_predictions <= 0
      and not config.model.remat
      and word_embedding_grad(config.model) == 'scatter'
  )
  executed = (
      full if configured_as_full else flops_per_example(config, token_spec, full_logits=False)
  )
  logging.info('FLOPs per example: %.4g (full logits), %.4g (as configured)', full, executed)
  return full, executed


def time_steps(train_step, state, batch, num_steps: int) -> tuple[Any, list[float], Any]:
  """Runs ``num_steps`` steps, each timed until its loss is ready (a scalar: no transfer).

  One executable's outputs become ready together, so waiting for the loss waits for the
  whole step, optimizer update included. Returns (state, seconds per step, last metrics).
  """
  seconds, metrics = [], None
  for _ in range(num_steps):
    start = time.perf_counter()
    state, metrics = train_step(state, batch)
    metrics['loss'].block_until_ready()
    seconds.append(time.perf_counter() - start)
  return state, seconds, metrics


def time_loop(train_step, state, batch, num_steps: int) -> tuple[Any, float, Any]:
  """Runs ``num_steps`` steps back to back (dispatch overlaps compute).

  Returns (state, total seconds, metrics of the last step).
  """
  start = time.perf_counter()
  metrics = None
  for _ in range(num_steps):
    state, metrics = train_step(state, batch)
  if metrics is not None:
    metrics['loss'].block_until_ready()
  return state, time.perf_counter() - start, metrics


def peak_memory_bytes(devices: Sequence[Any]) -> Optional[int]:
  """The largest ``peak_bytes_in_use`` over ``devices``; None where not reported (CPU)."""
  peaks = []
  for device in devices:
    stats = device.memory_stats()
    if stats and 'peak_bytes_in_use' in stats:
      peaks.append(int(stats['peak_bytes_in_use']))
  return max(peaks) if peaks else None


def run_benchmark(
    config: ml_collections.ConfigDict,
    *,
    num_steps: int,
    warmup: int,
    caption_tokens: tuple[int, int] = (20, 40),
    count_flops: bool = True,
    peak_tflops: Optional[float] = None,
    profile_dir: str = '',
) -> dict[str, Any]:
  """Compiles and times the training step of ``config``; returns the result dict.

  Args:
    num_steps: timed steps (median of the per-step times; also a back-to-back loop).
    warmup: untimed steps after compilation.
    caption_tokens: (min, max) real words per synthetic caption.
    count_flops: count FLOPs (a few seconds of tracing); else ``flops_per_example`` is None.
    peak_tflops: the device's peak rate for ``mfu``; None = ``PEAK_BF16_TFLOPS``.
    profile_dir: if set, a profiler trace of ``PROFILED_STEPS`` more steps is written there
      (after the timed ones, so the figures do not include the profiler's overhead).
  """
  if num_steps < 1 or warmup < 0:
    raise ConfigError(f'--steps must be >= 1 and --warmup >= 0 (got {num_steps}, {warmup}).')
  if not 0 < caption_tokens[0] <= caption_tokens[1]:
    raise ConfigError(f'caption lengths must satisfy 0 < min <= max, got {caption_tokens}.')
  config = ml_collections.ConfigDict(config.to_dict())
  m = config.model
  if 'attributes' in m.heads and not m.attribute_classes:
    raise ConfigError(
        'config.model.heads has the attribute heads but '
        'config.model.attribute_classes is empty (no dataset fills it in here); '
        'give e.g. --config.model.attribute_classes="(16, 6)" (the synthetic '
        "catalog's colour and pattern)."
    )
  ids = caption_ids_for(m.vocab_size)
  token_spec = ids.token_spec(m.vocab_size)

  try:
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_global_batch(config.global_batch_size, mesh)
  except ValueError as error:
    raise ConfigError(str(error)) from error

  full_flops, executed_flops = (
      count_flop_figures(config, token_spec) if count_flops else (None, None)
  )

  model = build_model(m)
  train_step, optimizer = _make_step(model, config, token_spec, warmup + 2 * num_steps)
  with jax.set_mesh(mesh):
    make_state = functools.partial(create_train_state, model, config, optimizer)
    state_shardings = sharding.state_shardings(jax.eval_shape(make_state), mesh)
    state = jax.jit(make_state, out_shardings=state_shardings)()
    batch_sharding = sharding.batch_sharding(mesh)
    recognition = 'recognition' in m.heads
    make_batch = functools.partial(
        synthetic_batch,
        batch_size=config.global_batch_size,
        image_size=m.image_size,
        text_length=m.text_length,
        vocab_size=m.vocab_size,
        ids=ids,
        caption_tokens=tuple(caption_tokens),
        num_main_classes=m.num_main_classes if recognition else 0,
        num_sub_classes=m.num_sub_classes if recognition else 0,
        attribute_classes=tuple(m.attribute_classes) if 'attributes' in m.heads else (),
    )
    batch = jax.jit(make_batch, out_shardings=batch_sharding)(jax.random.key(config.seed))

    logging.info('Compiling the training step ...')
    start = time.perf_counter()
    compiled_step = (
        jax.jit(
            train_step,
            in_shardings=(state_shardings, batch_sharding),
            out_shardings=(state_shardings, None),
            donate_argnums=(0,),
        )
        .lower(state, batch)
        .compile()
    )
    compile_seconds = time.perf_counter() - start
    logging.info(
        'Compiled in %.1f s; timing %d + %d steps ...', compile_seconds, warmup, 2 * num_steps
    )
    state, _, _ = time_steps(compiled_step, state, batch, warmup)
    state, seconds, _ = time_steps(compiled_step, state, batch, num_steps)
    state, loop_seconds, metrics = time_loop(compiled_step, state, batch, num_steps)
    if profile_dir:
      logging.info('Tracing %d steps into %s ...', PROFILED_STEPS, profile_dir)
      with jax.profiler.trace(profile_dir):
        state, _, metrics = time_loop(compiled_step, state, batch, PROFILED_STEPS)
    final_loss = float(metrics['loss'])  # of the last step: a NaN here flags a broken setup

  step_time = statistics.median(seconds)
  examples_per_s = config.global_batch_size / step_time
  device = jax.devices()[0]
  peak = peak_tflops if peak_tflops else peak_tflops_for(device.device_kind)
  mfu = None
  if full_flops is not None and peak is not None:
    mfu = full_flops * examples_per_s / (peak * 1e12 * jax.device_count())
  peak_bytes = peak_memory_bytes(jax.local_devices())
  return dict(
      model=m.variant,
      image_size=m.image_size,
      text_length=m.text_length,
      global_batch_size=config.global_batch_size,
      devices=jax.device_count(),
      device_kind=device.device_kind,
      dtype=m.dtype,
      step_time_s=step_time,
      examples_per_s=examples_per_s,
      flops_per_example=full_flops,
      mfu=mfu,
      peak_memory_gib=None if peak_bytes is None else peak_bytes / GIB,
      # Extras.
      executed_flops_per_example=executed_flops,
      peak_tflops_per_device=peak,
      step_time_min_s=min(seconds),
      step_time_max_s=max(seconds),
      loop_step_time_s=loop_seconds / num_steps,
      loop_examples_per_s=config.global_batch_size * num_steps / loop_seconds,
      compile_time_s=compile_seconds,
      steps=num_steps,
      warmup=warmup,
      processes=jax.process_count(),
      mesh=dict(mesh.shape),
      mlm_max_predictions=config.masking.mlm_max_predictions,
      attention_impl=m.attention_impl or 'default',
      remat=bool(m.remat),
      remat_policy=remat_policy(m) if m.remat else None,
      word_embedding_grad=word_embedding_grad(m),
      loss_schedule=config.loss_schedule,
      xla_flags=os.environ.get('XLA_FLAGS', ''),
      final_loss=final_loss,
  )


_STEPS = flags.DEFINE_integer(
    'steps', 30, 'Timed steps (the median is reported; >= 20 for ' 'figures worth recording).'
)
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps after compilation.')
_CAPTION_MIN = flags.DEFINE_integer('caption_min_tokens', 20, 'Fewest words per caption.')
_CAPTION_MAX = flags.DEFINE_integer('caption_max_tokens', 40, 'Most words per caption.')
_COUNT_FLOPS = flags.DEFINE_boolean(
    'count_flops', True, 'Count FLOPs per example (needed for mfu).'
)
_PEAK_TFLOPS = flags.DEFINE_float(
    'peak_tflops', 0.0, 'Peak TFLOP/s per device for mfu ' '(0 = the table by device kind).'
)
_PROFILE_DIR = flags.DEFINE_string(
    'profile_dir',
    '',
    'Write a profiler trace (TensorBoard / ' 'xprof) of a few extra steps to this folder.',
)
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.', lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = flags.FLAGS.config
  if config is None:
    raise app.UsageError('--config is required (e.g. --config=configs/pretrain.py).')
  try:
    distributed.maybe_initialize(config.distributed)
    result = run_benchmark(
        config,
        num_steps=_STEPS.value,
        warmup=_WARMUP.value,
        caption_tokens=(_CAPTION_MIN.value, _CAPTION_MAX.value),
        count_flops=_COUNT_FLOPS.value,
        peak_tflops=_PEAK_TFLOPS.value or None,
        profile_dir=_PROFILE_DIR.value,
    )
  except MVLTError as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  if jax.process_index() == 0:
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main)
