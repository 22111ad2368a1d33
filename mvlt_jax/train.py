"""The training loop: ``train_and_evaluate(config, workdir)``.

Sharded ``jax.jit`` over a (data, fsdp) mesh, donated state, orbax checkpoints that
survive preemption, a progress bar, TensorBoard, and a guard against non-finite losses.
"""

import functools
import os
import signal
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from mvlt_jax import checkpoint as checkpoint_lib
from mvlt_jax import config_check, data, distributed, locking, optim, sharding, steps, summary
from mvlt_jax.errors import ConfigError, MVLTError, NonFiniteLossError
from mvlt_jax.masking import TokenSpec
from mvlt_jax.models import build_model
from mvlt_jax.train_state import (
    TrainState,
    create_train_state,
    load_init_from,
    warn_if_vision_from_scratch,
)


def recipe_summary(config) -> str:
  """One line naming the recipe choices where the release and the paper differ
  (docs/fidelity.md); printed at the start of every training run (the values themselves are
  in config.json)."""
  m, ds, opt = config.model, config.dataset, config.optimizer
  choices = dict(
      loss_schedule=config.loss_schedule,
      image_mask=config.masking.get('image_distribution', 'exact'),
      repeated_sampling=ds.get('repeated_sampling', 1),
      word_padding_idx=m.get('word_padding_idx', 0),
      word_init_std=('release' if m.get('word_init_std') is None else m.word_init_std),
      weight_decay=f"{opt.weight_decay}/{opt.get('weight_decay_groups', 'release')}",
      lr_schedule_unit=opt.get('lr_schedule_unit', 'step'),
      best=(
          f'{config.best_metric}/{config.best_mode} from '
          f"{config.get('best_from_fraction', 0.0):.0%}"
          if config.best_metric
          else 'none'
      ),
      init_from=config.init_from or 'none',
  )
  return 'recipe: ' + ', '.join(f'{key}={value}' for key, value in choices.items())


# ----------------------------------------------------------------------------- loop


class TrainingInterrupted(MVLTError):
  """Training stopped early on SIGTERM (a preemption) or Ctrl-C, after saving a checkpoint.

  ``main.py`` exits with ``exit_code`` (128 + the signal's number: 143 after SIGTERM, 130
  after Ctrl-C), so that a scheduler sees an unfinished run; running the same command again
  resumes it.
  """

  def __init__(self, step: int, signal_number: int):
    self.step = step
    self.exit_code = 128 + signal_number
    name = signal.Signals(signal_number).name
    super().__init__(
        f'{name} received: checkpoint saved at step {step}; run the same command again to '
        'resume.'
    )


class StopSignals:
  """SIGTERM and SIGINT (Ctrl-C) set ``received``; the loop then saves a checkpoint and stops.
  A second Ctrl-C stops at once, without saving (Python's KeyboardInterrupt)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: Optional[int] = None
    self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.received == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    # Only a flag here: printing from a signal handler can re-enter a print in progress.
    self.received = signum

  def describe(self) -> str:
    """What the loop prints when it stops for a signal."""
    name = signal.Signals(self.received).name if self.received else 'Preemption notice'
    again = ' (Ctrl-C again: stop without saving)' if self.received == signal.SIGINT else ''
    return f'{name} received: saving a checkpoint and stopping{again}.'

  def restore(self):
    for number, previous in self._previous.items():
      signal.signal(number, previous)


def check_finite(step: int, metrics: dict) -> None:
  losses = {k: float(v) for k, v in metrics.items() if k.startswith('loss')}
  if not all(np.isfinite(v) for v in losses.values()):
    details = ', '.join(f'{k}={v:.6g}' for k, v in sorted(losses.items()))
    raise NonFiniteLossError(
        f'Non-finite loss at step {step}: {details}. Stopping; the last ' 'good checkpoint is kept.'
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and returns the state.

  Raises:
    TrainingInterrupted: SIGTERM or Ctrl-C stopped the run (a checkpoint was saved).
    MVLTError: a problem the user can fix (the message says which); the workdir is left as
      it was.
  """
  config_check.check_config(config)
  config_check.check_workdir(workdir)
  distributed.maybe_initialize(config.distributed)
  config_check.check_devices(config)
  if jax.process_index() != 0:
    return _train(config, workdir)
  with locking.exclusive(workdir, 'training'):
    return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  prepared = data.load_dataset(config)
  config = data.resolve_config(config, prepared)
  is_chief = jax.process_index() == 0
  recipe = recipe_summary(config)
  logging.info(recipe)
  if is_chief:
    print(recipe, flush=True)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_global_batch(config.global_batch_size, mesh)
  model = build_model(config.model)
  token_spec = TokenSpec.from_tokenizer(prepared.tokenizer)
  steps_per_epoch = data.steps_per_epoch(config)
  total_steps = config.total_steps or int(config.num_epochs * steps_per_epoch)
  if total_steps <= 0:
    raise ConfigError(
        f'config.num_epochs={config.num_epochs} of {steps_per_epoch} steps each is no step: '
        'set --config.num_epochs or --config.total_steps.'
    )
  schedule = optim.learning_rate_schedule(
      config.optimizer, config.global_batch_size, steps_per_epoch, total_steps
  )
  optimizer = optim.make_optimizer(config.optimizer, schedule)

  with jax.set_mesh(mesh):
    make_state = functools.partial(create_train_state, model, config, optimizer)
    abstract_state = jax.eval_shape(make_state)
    state_shardings = sharding.state_shardings(abstract_state, mesh)
    checkpoint_dir = os.path.join(workdir, 'checkpoints')
    # Before anything is written: a workdir of another model or tokenizer is refused.
    checkpoint_lib.check_resumable(
        checkpoint_dir, config, prepared.tokenizer, abstract_state.params
    )
    state = jax.jit(make_state, out_shardings=state_shardings)()
    num_params = summary.count_parameters(state.params)
    logging.info('parameters: %s', f'{num_params:,}')
    if is_chief:
      print(f'parameters: {num_params:,}', flush=True)

    manager = checkpoint_lib.make_manager(checkpoint_dir, keep=config.keep_checkpoints)
    abstract = jax.tree.map(
        lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
        abstract_state,
        state_shardings,
    )
    restored = checkpoint_lib.restore_latest(manager, abstract)  # data position = step
    if restored is not None:
      state = restored.state
      _put_aside_unreadable(manager, restored, workdir, is_chief)
      logging.info('Resuming from step %d (checkpoint %s).', restored.step, checkpoint_dir)
      if is_chief:
        print(f'Resuming from step {restored.step} ({checkpoint_dir}).', flush=True)
    else:
      loaded_params = set()
      if config.init_from:
        state, loaded_params = load_init_from(state, config)
        state = jax.device_put(state, state_shardings)
      warn_if_vision_from_scratch(config, loaded_params)
    # The run's files, once the checkpoint (if any) is known to fit this config.
    checkpoint_lib.write_run_files(checkpoint_dir, config, data.tokenizer_dir(config))
    if is_chief:
      with open(os.path.join(workdir, 'config.json'), 'w') as f:
        f.write(config.to_json_best_effort(indent=2))
    start_step = int(state.step)

    batch_sharding = sharding.batch_sharding(mesh)
    train_step = jax.jit(
        steps.make_train_step(model, config, token_spec, optimizer, schedule),
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, None),
        donate_argnums=(0,),
    )
    # Replicated outputs: every process can read the pictures (process 0 writes them).
    reconstruct = jax.jit(
        steps.make_reconstruct_step(model, config), out_shardings=sharding.replicated(mesh)
    )
    batches = data.train_batches(config, start_step)
    validation = None
    if config.validation_every:
      validation = Validation(
          config,
          model,
          token_spec,
          batch_sharding,
          os.path.join(workdir, BEST_CHECKPOINT_DIR),
          keep_from_step=int(config.best_from_fraction * total_steps),
      )
    try:
      state = _loop(
          config,
          workdir,
          state,
          train_step,
          reconstruct,
          batches,
          batch_sharding,
          manager,
          start_step,
          total_steps,
          steps_per_epoch,
          validation,
      )
    finally:
      batches.close()  # stops the reader threads now, not at interpreter exit
      manager.wait_until_finished()
      manager.close()
      if validation is not None:
        validation.close()
  return state


def _put_aside_unreadable(manager, restored, workdir: str, is_chief: bool) -> None:
  """Steps newer than the restored one that did not restore move to UNREADABLE_DIR."""
  if not restored.unreadable:
    return
  moved = checkpoint_lib.put_aside(
      manager,
      [step for step, _ in restored.unreadable],
      os.path.join(workdir, checkpoint_lib.UNREADABLE_DIR),
  )
  for (step, reason), path in zip(restored.unreadable, moved):  # moved: process 0's list
    message = f'checkpoint step {step} does not restore ({reason}); moved to {path}.'
    logging.info(message)
    if is_chief:
      print(f'warning: {message}', flush=True)


BEST_CHECKPOINT_DIR = 'best_checkpoint'


class Validation:
  """Validation losses while training, and the checkpoint with the best of them.

  Every evaluation reads the same first ``config.validation_batches`` global batches of
  ``dataset.eval_split`` (ITM pairs and word / image masks drawn from fixed seeds), so the
  figures of different steps compare. With ``config.best_metric`` the state of the best
  evaluation so far is kept in ``best_dir`` (orbax keeps one, chosen by its metrics, across
  restarts), with config.json and the tokenizer like ``checkpoints/``. Evaluations before
  ``keep_from_step`` are reported but not kept (the release keeps its best only from epoch
  100 of 150 on: ``config.best_from_fraction``).
  """

  def __init__(
      self,
      config,
      model,
      token_spec: TokenSpec,
      batch_sharding,
      best_dir: str,
      keep_from_step: int = 0,
  ):
    self._config = config
    self._batch_sharding = batch_sharding
    self._keep_from_step = keep_from_step
    release_metrics = config.best_metric in steps.RELEASE_METRICS
    self._step = jax.jit(
        steps.make_eval_step(model, config, token_spec, release_metrics=release_metrics)
    )
    self.best_manager = None
    if config.best_metric:
      if config.best_mode not in ('min', 'max'):
        raise ConfigError(f'config.best_mode={config.best_mode!r}; use min or max.')
      names = steps.eval_metric_names(config.model.heads, release_metrics=release_metrics)
      if config.best_metric not in names:
        raise ConfigError(
            f'config.best_metric={config.best_metric!r} is not among the '
            f'validation metrics of this model: {sorted(names)}.'
        )
      self.best_manager = checkpoint_lib.make_manager(
          best_dir,
          keep=1,
          best_metric=config.best_metric,
          best_mode=config.best_mode,
          barrier_prefix='best',
      )
      checkpoint_lib.write_run_files(best_dir, config, data.tokenizer_dir(config))
      # The best value so far (of an earlier run of this workdir too): only a better
      # evaluation is written, instead of saving every one and letting orbax drop the worse.
      best_step = self.best_manager.best_step()
      kept_metrics = self.best_manager.metrics(best_step) if best_step is not None else None
      self._best_value = kept_metrics.get(config.best_metric) if kept_metrics else None

  def evaluate(self, state: TrainState) -> dict[str, float]:
    """Mean metrics over the validation batches."""
    config = self._config
    batches = data.validation_batches(config)
    sums = {}
    try:
      for index in range(config.validation_batches):
        batch = sharding.to_global_batch(next(batches), self._batch_sharding)
        rng = jax.random.fold_in(jax.random.key(config.seed), index)
        for key, value in self._step(state.variables, batch, rng).items():
          sums[key] = sums.get(key, 0.0) + value
    finally:
      batches.close()
    return {key: float(value) / config.validation_batches for key, value in sums.items()}

  def keep_if_best(
      self, step: int, state: TrainState, data_state: dict, metrics: dict[str, float]
  ) -> None:
    if self.best_manager is None or step < self._keep_from_step:
      return
    value = metrics[self._config.best_metric]
    if self._best_value is not None and not (
        value < self._best_value if self._config.best_mode == 'min' else value > self._best_value
    ):
      return
    checkpoint_lib.save(self.best_manager, step, state, data_state, metrics=metrics, force=True)
    self._best_value = value

  def close(self) -> None:
    if self.best_manager is not None:
      self.best_manager.wait_until_finished()
      self.best_manager.close()


def _loop(
    config,
    workdir,
    state,
    train_step,
    reconstruct,
    batches,
    batch_sharding,
    manager,
    start_step: int,
    total_steps: int,
    steps_per_epoch: int,
    validation: Optional['Validation'],
) -> TrainState:
  is_chief = jax.process_index() == 0
  writer = _summary_writer(workdir) if is_chief else None
  progress = _progress_bar(start_step, total_steps) if is_chief else None
  signals = StopSignals()
  pending: Optional[tuple[int, Any]] = None  # metrics of the step before, fetched one step late
  window_start, window_steps = time.perf_counter(), 0
  step = start_step
  try:
    while step < total_steps:
      local_batch = next(batches)
      batch = sharding.to_global_batch(local_batch, batch_sharding)
      with jax.transfer_guard_host_to_device('disallow'):
        state, metrics = train_step(state, batch)
      step += 1
      window_steps += 1
      if pending is not None:  # the previous step has finished or nearly: cheap to read
        _report(*pending, writer, progress)
      pending = (step, metrics)
      if step % config.log_every == 0 or step == total_steps:
        elapsed = time.perf_counter() - window_start
        throughput = window_steps * config.global_batch_size / elapsed
        _report(*pending, writer, progress, throughput=throughput)
        pending = None
        window_start, window_steps = time.perf_counter(), 0
      stop = signals.received is not None or manager.reached_preemption(step)
      if stop:
        logging.info(signals.describe())
        if is_chief:
          (progress.write if progress is not None else print)(signals.describe())
      if step % config.checkpoint_every == 0 or step == total_steps or stop:
        if pending is not None:
          _report(*pending, writer, progress)
          pending = None
        checkpoint_lib.save(manager, step, state, _data_state(step, steps_per_epoch), force=True)
        # Every process runs the (collective) computation; process 0 writes.
        _image_summaries(writer, step, state, batch, reconstruct, config)
      if (
          validation is not None
          and not stop
          and (step % config.validation_every == 0 or step == total_steps)
      ):
        if pending is not None:
          _report(*pending, writer, progress)
          pending = None
        values = validation.evaluate(state)
        _report_validation(step, values, writer, progress)
        validation.keep_if_best(step, state, _data_state(step, steps_per_epoch), values)
        window_start, window_steps = time.perf_counter(), 0  # not counted as training time
      if stop:
        manager.wait_until_finished()
        logging.info('Stopped at step %d; checkpoint saved.', step)
        if is_chief:
          print(f'Preempted: checkpoint saved at step {step}.', flush=True)
        raise TrainingInterrupted(step, signals.received or signal.SIGTERM)
    if pending is not None:
      _report(*pending, writer, progress)
  finally:
    signals.restore()
    manager.wait_until_finished()
    if progress is not None:
      progress.close()
    if writer is not None:
      writer.flush()
  return state


def _data_state(step: int, steps_per_epoch: int) -> dict:
  return {'step': step, 'epoch': step // steps_per_epoch}


def _report_validation(step: int, values: dict[str, float], writer, progress) -> None:
  line = ', '.join(f'{k}={v:.4f}' for k, v in sorted(values.items()))
  logging.info('validation at step %d: %s', step, line)
  if writer is not None:
    for key, value in values.items():
      writer.scalar(f'validation/{key}', value, step)
  if progress is not None:
    progress.write(f'validation at step {step}: {line}')


def _report(step: int, metrics, writer, progress, throughput: Optional[float] = None) -> None:
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  check_finite(step, values)
  if throughput is not None:
    values['examples_per_s'] = throughput
  if writer is not None:
    for key, value in values.items():
      writer.scalar(f'train/{key}', value, step)
  if progress is not None:
    progress.update(step - progress.n)
    shown = {k.replace('loss_', ''): f'{v:.4f}' for k, v in values.items() if k.startswith('loss')}
    if throughput is not None:
      progress.throughput = throughput
    if hasattr(progress, 'throughput'):
      shown['ex/s'] = f'{progress.throughput:.1f}'
    progress.set_postfix(shown, refresh=False)
  if throughput is not None:
    logging.info('step %d: %s', step, ', '.join(f'{k}={v:.5g}' for k, v in values.items()))


def _progress_bar(start_step: int, total_steps: int):
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel

  return tqdm(
      total=total_steps,
      initial=start_step,
      desc='train',
      unit='step',
      dynamic_ncols=True,
      mininterval=1.0,
  )


def _summary_writer(workdir: str):
  from flax.metrics import tensorboard  # pylint: disable=import-outside-toplevel

  return tensorboard.SummaryWriter(workdir)


def _image_summaries(writer, step, state, batch, reconstruct, config, count: int = 4):
  """Masked inputs and reconstructions of the first training images (MIR models only)."""
  if 'mir' not in config.model.heads:
    return
  masked, reconstruction = reconstruct(
      state.variables, batch['images'][:count], batch['input_ids'][:count], jax.random.key(step)
  )
  if writer is not None:
    writer.image('train/masked_input', np.asarray(masked), step, max_outputs=count)
    writer.image('train/reconstruction', np.asarray(reconstruction), step, max_outputs=count)
