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
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from mvlt_jax import checkpoint as checkpoint_lib
from mvlt_jax import distributed, optim, sharding, steps, summary
from mvlt_jax.errors import ConfigError, NonFiniteLossError
from mvlt_jax.masking import TokenSpec
from mvlt_jax.models import build_model
from mvlt_jax.train_state import TrainState


# ----------------------------------------------------------------------------- data


def load_dataset(config):
  """The prepared dataset of ``config.dataset``.

  A dataset prepared already (e.g. by hand with ``python -m input_pipeline.prepare`` and
  options of its own) is used as it is; with ``dataset.auto_prepare`` process 0 prepares a
  missing one first, with the config's options, while the other processes wait.
  """
  from input_pipeline import errors as data_errors  # pylint: disable=import-outside-toplevel
  from input_pipeline import prepare  # pylint: disable=import-outside-toplevel
  ds = config.dataset
  if ds.auto_prepare and jax.process_index() == 0:
    try:
      prepare.load_prepared(ds.name, ds.data_dir)
    except data_errors.NotPreparedError:
      result = prepare.prepare_dataset(ds.name, ds.data_dir, manual_dir=ds.manual_dir or None,
                                       **prepare_options(config))
      print(result.format(), flush=True)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices('dataset prepared')
  return prepare.load_prepared(ds.name, ds.data_dir)


def prepare_options(config) -> dict:
  ds = config.dataset
  options = dict(tokenizer=ds.tokenizer, vocab_file=ds.vocab_file or None,
                 text_length=config.model.text_length, caption_fields=ds.caption_fields)
  options.update(ds.prepare_options.to_dict())
  return options


def resolve_config(config, prepared) -> ml_collections.ConfigDict:
  """A copy of ``config`` with the sizes that come from the data filled in and checked."""
  config = ml_collections.ConfigDict(config.to_dict())
  tokenizer = prepared.tokenizer
  features = prepared.builder.info.features
  from_data = {
      'vocab_size': tokenizer.vocab_size,
      'num_main_classes': len(features['category'].names),
      'num_sub_classes': len(features['subcategory'].names),
  }
  for field, value in from_data.items():
    if config.model[field] == 0:
      config.model[field] = value
    elif config.model[field] != value and (field == 'vocab_size'
                                           or 'recognition' in config.model.heads):
      raise ConfigError(f'config.model.{field}={config.model[field]} but the dataset '
                        f'{config.dataset.name} in {config.dataset.data_dir} has {value}; set '
                        f'--config.model.{field}=0 to take it from the data.')
  if 'attributes' in config.model.heads:
    attributes = (prepared.builder.info.metadata or {}).get('attributes') or {}
    classes = tuple(len(values) for values in attributes.values())
    where = os.path.join(config.dataset.data_dir, config.dataset.name)
    if not classes:
      raise ConfigError(f"config.model.heads has 'attributes' but {where} has no attribute "
                        'labels: only synthetic_fashion has them, and one prepared by an '
                        f"older version does not (remove {where} to prepare it again), or "
                        "leave 'attributes' out of config.model.heads.")
    if not config.model.attribute_classes:
      config.model.attribute_classes = classes
    elif tuple(config.model.attribute_classes) != classes:
      raise ConfigError(f'config.model.attribute_classes={tuple(config.model.attribute_classes)}'
                        f' but {where} has {classes} ({list(attributes)}); set '
                        '--config.model.attribute_classes="()" to take them from the data.')
  text_length = features['input_ids'].shape[0]
  if text_length != config.model.text_length:
    raise ConfigError(f'config.model.text_length={config.model.text_length} but the dataset '
                      f'{config.dataset.name} in {config.dataset.data_dir} was prepared with '
                      f'text_length={text_length}: prepare it again (remove '
                      f'{os.path.join(config.dataset.data_dir, config.dataset.name)}, or use '
                      f'another --config.dataset.data_dir), or set '
                      f'--config.model.text_length={text_length}.')
  return config


# ----------------------------------------------------------------------------- state


def init_variables(model, config, rng: jax.Array) -> dict:
  size = config.model.image_size
  images = jnp.zeros((1, size, size, 3), jnp.float32)
  input_ids = jnp.zeros((1, config.model.text_length), jnp.int32)
  return model.init({'params': rng}, images, input_ids)


def create_train_state(model, config, optimizer) -> TrainState:
  # 'rbg' keys compile the initialisers much faster; the step keys use the default PRNG.
  init_rng = jax.random.key(config.seed, impl=config.init_prng_impl)
  variables = init_variables(model, config, init_rng)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}),
                    opt_state=optimizer.init(params),
                    rng=jax.random.key_data(jax.random.key(config.seed + 1)))


def load_init_from(state: TrainState, config) -> tuple[TrainState, set[str]]:
  """Replaces params / BatchNorm statistics with those of ``config.init_from``; returns the
  new state and the names of the top-level parameter modules that were loaded.

  ``init_from`` is a checkpoint directory (ours, or converted) or a PyTorch file (e.g. PVT's
  ImageNet ``pvt_tiny.pth``, or a release checkpoint), converted on the fly with the
  converter's strictness and messages. Modules present in the new model but absent from the
  source (e.g. new heads, or all but the vision path for ``pvt_tiny.pth``) keep their fresh
  initialisation; shapes of shared modules must agree.
  """
  from mvlt_jax import convert  # pylint: disable=import-outside-toplevel
  path = config.init_from
  class_mapping = None
  if 'recognition' in config.model.heads and path.endswith(convert.TORCH_FILE_SUFFIXES):
    # A release recognition checkpoint: its head rows follow the release's class order; map
    # them by name to the classes of the dataset this run trains on.
    class_mapping = convert.make_class_mapping(
        os.path.join(config.dataset.data_dir, config.dataset.name))
  variables, description = convert.load_init_variables(path, config.model,
                                                       class_mapping=class_mapping)
  merged, loaded_params = {}, set()
  for collection in ('params', 'batch_stats'):
    current = getattr(state, collection)
    loaded = variables.get(collection, {})
    new, used = _merge(current, loaded, path=collection)
    merged[collection] = new
    if collection == 'params':
      loaded_params = set(used)
    logging.info('init_from %s (%s): %s: took %d modules, kept %d fresh', path, description,
                 collection, len(used), len(set(current) - set(used)))
  if jax.process_index() == 0:
    print(f'init_from {path}: {description}', flush=True)
  return state.replace(**merged), loaded_params


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
      best=(f"{config.best_metric}/{config.best_mode} from "
            f"{config.get('best_from_fraction', 0.0):.0%}" if config.best_metric else 'none'),
      init_from=config.init_from or 'none')
  return 'recipe: ' + ', '.join(f'{key}={value}' for key, value in choices.items())


# The first module of the vision path: present in any source that initialises it.
VISION_MARKER = 'patch_embed1'


def warn_if_vision_from_scratch(config, loaded_params: set[str]) -> None:
  """One line when a run that expects PVT ImageNet weights starts the vision path fresh."""
  if not config.get('pretrained_vision_expected', False):
    return
  if VISION_MARKER in loaded_params:
    return
  message = ('warning: the vision path starts from scratch (no PVT ImageNet weights: pass '
             '--config.init_from=pvt_tiny.pth); the paper\'s Table 4 reports retrieval about '
             '6 points of R@5 lower without them. Running on.')
  logging.warning(message)
  if jax.process_index() == 0:
    print(message, flush=True)


def _merge(current: dict, loaded: dict, path: str):
  out, used = dict(current), []
  for name, value in loaded.items():
    if name not in current:
      continue  # e.g. pre-training heads when fine-tuning for recognition
    shapes_now = jax.tree.map(lambda x: x.shape, current[name])
    shapes_loaded = jax.tree.map(lambda x: tuple(np.shape(x)), value)
    if shapes_now != shapes_loaded:
      raise ConfigError(f'init_from: {path}/{name} has other shapes in the checkpoint than in '
                        'the configured model.')
    out[name] = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), value, current[name])
    used.append(name)
  return out, used


# ----------------------------------------------------------------------------- loop


class PreemptionFlag:
  """Set by SIGTERM; the loop then saves a checkpoint and exits cleanly."""

  def __init__(self):
    self.raised = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning('SIGTERM received: saving a checkpoint and stopping.')
    self.raised = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def check_finite(step: int, metrics: dict) -> None:
  losses = {k: float(v) for k, v in metrics.items() if k.startswith('loss')}
  if not all(np.isfinite(v) for v in losses.values()):
    details = ', '.join(f'{k}={v:.6g}' for k, v in sorted(losses.items()))
    raise NonFiniteLossError(f'Non-finite loss at step {step}: {details}. Stopping; the last '
                             'good checkpoint is kept.')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and returns the state."""
  distributed.maybe_initialize(config.distributed)
  from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel
  prepared = load_dataset(config)
  config = resolve_config(config, prepared)
  ds = config.dataset
  is_chief = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if is_chief:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))

  if not 0.0 <= config.get('best_from_fraction', 0.0) <= 1.0:
    raise ConfigError(f'config.best_from_fraction={config.best_from_fraction}; use a share of '
                      'training in [0, 1].')
  recipe = recipe_summary(config)
  logging.info(recipe)
  if is_chief:
    print(recipe, flush=True)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_global_batch(config.global_batch_size, mesh)
  model = build_model(config.model)
  token_spec = TokenSpec.from_tokenizer(prepared.tokenizer)
  steps_per_epoch = pipeline.steps_per_epoch(ds.data_dir, ds.name, ds.train_split,
                                             config.global_batch_size)
  total_steps = config.total_steps or int(config.num_epochs * steps_per_epoch)
  schedule = optim.learning_rate_schedule(config.optimizer, config.global_batch_size,
                                          steps_per_epoch, total_steps)
  optimizer = optim.make_optimizer(config.optimizer, schedule)

  with jax.set_mesh(mesh):
    make_state = functools.partial(create_train_state, model, config, optimizer)
    abstract_state = jax.eval_shape(make_state)
    state_shardings = sharding.state_shardings(abstract_state, mesh)
    state = jax.jit(make_state, out_shardings=state_shardings)()
    num_params = summary.count_parameters(state.params)
    logging.info('parameters: %s', f'{num_params:,}')
    if is_chief:
      print(f'parameters: {num_params:,}', flush=True)

    checkpoint_dir = os.path.join(workdir, 'checkpoints')
    manager = checkpoint_lib.make_manager(checkpoint_dir, keep=config.keep_checkpoints)
    checkpoint_lib.write_run_files(checkpoint_dir, config, _tokenizer_dir(config))
    latest = manager.latest_step()
    if latest is not None:
      abstract = jax.tree.map(
          lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
          abstract_state, state_shardings)
      state, _ = checkpoint_lib.restore(manager, latest, abstract)  # data position = step
      logging.info('Resuming from step %d (checkpoint %s).', latest, checkpoint_dir)
      if is_chief:
        print(f'Resuming from step {latest} ({checkpoint_dir}).', flush=True)
    else:
      loaded_params = set()
      if config.init_from:
        state, loaded_params = load_init_from(state, config)
        state = jax.device_put(state, state_shardings)
      warn_if_vision_from_scratch(config, loaded_params)
    start_step = int(state.step)

    batch_sharding = sharding.batch_sharding(mesh)
    train_step = jax.jit(steps.make_train_step(model, config, token_spec, optimizer, schedule),
                         in_shardings=(state_shardings, batch_sharding),
                         out_shardings=(state_shardings, None), donate_argnums=(0,))
    # Replicated outputs: every process can read the pictures (process 0 writes them).
    reconstruct = jax.jit(steps.make_reconstruct_step(model, config),
                          out_shardings=sharding.replicated(mesh))
    batches = pipeline.train_iterator(
        ds.data_dir, ds.name, ds.train_split, config.global_batch_size, seed=config.seed,
        start_step=start_step, itm_negative_prob=ds.itm_negative_prob,
        itm_hard_negative_prob=ds.itm_hard_negative_prob,
        itm_hard_negative_from_step=ds.itm_hard_negative_from_step,
        image_size=config.model.image_size, prefetch=ds.prefetch,
        num_workers=ds.num_workers or None,
        attribute_labels='attributes' in config.model.heads,
        repeats=ds.repeated_sampling)
    validation = None
    if config.validation_every:
      validation = Validation(config, model, token_spec, batch_sharding,
                              os.path.join(workdir, BEST_CHECKPOINT_DIR),
                              keep_from_step=int(config.best_from_fraction * total_steps))
    try:
      state = _loop(config, workdir, state, train_step, reconstruct, batches, batch_sharding,
                    manager, start_step, total_steps, steps_per_epoch, validation)
    finally:
      batches.close()  # stops the reader threads now, not at interpreter exit
      manager.wait_until_finished()
      manager.close()
      if validation is not None:
        validation.close()
  return state


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

  def __init__(self, config, model, token_spec: TokenSpec, batch_sharding, best_dir: str,
               keep_from_step: int = 0):
    self._config = config
    self._batch_sharding = batch_sharding
    self._keep_from_step = keep_from_step
    release_metrics = config.best_metric in steps.RELEASE_METRICS
    self._step = jax.jit(steps.make_eval_step(model, config, token_spec,
                                              release_metrics=release_metrics))
    self.best_manager = None
    if config.best_metric:
      if config.best_mode not in ('min', 'max'):
        raise ConfigError(f'config.best_mode={config.best_mode!r}; use min or max.')
      names = steps.eval_metric_names(config.model.heads, release_metrics=release_metrics)
      if config.best_metric not in names:
        raise ConfigError(f'config.best_metric={config.best_metric!r} is not among the '
                          f'validation metrics of this model: {sorted(names)}.')
      self.best_manager = checkpoint_lib.make_manager(
          best_dir, keep=1, best_metric=config.best_metric, best_mode=config.best_mode,
          barrier_prefix='best')
      checkpoint_lib.write_run_files(best_dir, config, _tokenizer_dir(config))
      # The best value so far (of an earlier run of this workdir too): only a better
      # evaluation is written, instead of saving every one and letting orbax drop the worse.
      best_step = self.best_manager.best_step()
      kept_metrics = self.best_manager.metrics(best_step) if best_step is not None else None
      self._best_value = kept_metrics.get(config.best_metric) if kept_metrics else None

  def evaluate(self, state: TrainState) -> dict[str, float]:
    """Mean metrics over the validation batches."""
    from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel
    config, ds = self._config, self._config.dataset
    batches = pipeline.train_iterator(
        ds.data_dir, ds.name, ds.eval_split, config.global_batch_size, seed=config.seed,
        itm_negative_prob=ds.itm_negative_prob, itm_hard_negative_prob=ds.itm_hard_negative_prob,
        image_size=config.model.image_size, num_workers=ds.num_workers or None,
        attribute_labels='attributes' in config.model.heads)
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

  def keep_if_best(self, step: int, state: TrainState, data_state: dict,
                   metrics: dict[str, float]) -> None:
    if self.best_manager is None or step < self._keep_from_step:
      return
    value = metrics[self._config.best_metric]
    if self._best_value is not None and not (value < self._best_value
                                             if self._config.best_mode == 'min'
                                             else value > self._best_value):
      return
    checkpoint_lib.save(self.best_manager, step, state, data_state, metrics=metrics, force=True)
    self._best_value = value

  def close(self) -> None:
    if self.best_manager is not None:
      self.best_manager.wait_until_finished()
      self.best_manager.close()


def _tokenizer_dir(config) -> Optional[str]:
  from input_pipeline import prepare  # pylint: disable=import-outside-toplevel
  return prepare.tokenizer_dir(config.dataset.data_dir, config.dataset.name)


def _loop(config, workdir, state, train_step, reconstruct, batches, batch_sharding, manager,
          start_step: int, total_steps: int, steps_per_epoch: int,
          validation: Optional['Validation']) -> TrainState:
  is_chief = jax.process_index() == 0
  writer = _summary_writer(workdir) if is_chief else None
  progress = _progress_bar(start_step, total_steps) if is_chief else None
  preemption = PreemptionFlag()
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
      if config.debug_step_delay_s:
        time.sleep(config.debug_step_delay_s)
      if pending is not None:  # the previous step has finished or nearly: cheap to read
        _report(*pending, writer, progress)
      pending = (step, metrics)
      if step % config.log_every == 0 or step == total_steps:
        elapsed = time.perf_counter() - window_start
        throughput = window_steps * config.global_batch_size / elapsed
        _report(*pending, writer, progress, throughput=throughput)
        pending = None
        window_start, window_steps = time.perf_counter(), 0
      stop = preemption.raised or manager.reached_preemption(step)
      if step % config.checkpoint_every == 0 or step == total_steps or stop:
        if pending is not None:
          _report(*pending, writer, progress)
          pending = None
        checkpoint_lib.save(manager, step, state, _data_state(step, steps_per_epoch), force=True)
        # Every process runs the (collective) computation; process 0 writes.
        _image_summaries(writer, step, state, batch, reconstruct, config)
      if (validation is not None and not stop
          and (step % config.validation_every == 0 or step == total_steps)):
        if pending is not None:
          _report(*pending, writer, progress)
          pending = None
        values = validation.evaluate(state)
        _report_validation(step, values, writer, progress)
        validation.keep_if_best(step, state, _data_state(step, steps_per_epoch), values)
        window_start, window_steps = time.perf_counter(), 0  # not counted as training time
      if stop:
        manager.wait_until_finished()
        logging.warning('Stopped at step %d after SIGTERM; checkpoint saved.', step)
        if is_chief:
          print(f'Preempted: checkpoint saved at step {step}.', flush=True)
        break
    if pending is not None:
      _report(*pending, writer, progress)
  finally:
    preemption.restore()
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
  return tqdm(total=total_steps, initial=start_step, desc='train', unit='step',
              dynamic_ncols=True, mininterval=1.0)


def _summary_writer(workdir: str):
  from flax.metrics import tensorboard  # pylint: disable=import-outside-toplevel
  return tensorboard.SummaryWriter(workdir)


def _image_summaries(writer, step, state, batch, reconstruct, config, count: int = 4):
  """Masked inputs and reconstructions of the first training images (MIR models only)."""
  if 'mir' not in config.model.heads:
    return
  masked, reconstruction = reconstruct(state.variables, batch['images'][:count],
                                       batch['input_ids'][:count], jax.random.key(step))
  if writer is not None:
    writer.image('train/masked_input', np.asarray(masked), step, max_outputs=count)
    writer.image('train/reconstruction', np.asarray(reconstruction), step, max_outputs=count)
