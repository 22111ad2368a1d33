"""The whole config checked before anything is compiled, prepared or written.

``check_config(config)`` raises one ``ConfigError`` naming the field, its value and what it
may be; ``check_workdir(path)`` says when a workdir cannot be written; ``check_devices``
checks the mesh and the batch against the devices (after joining a multi-process job). None
but ``check_devices`` touches JAX's backend, so they can run before
``jax.distributed.initialize``. ``main.py`` calls both
first; ``train.train_and_evaluate`` calls them too, for users who call it from Python.
Sizes that come from the data (``vocab_size``, class counts, ``attribute_classes`` left at
0 / ``()``) are checked later, against the prepared dataset (``data.resolve_config``).
"""

import os

from mvlt_jax import sharding
from mvlt_jax.errors import ConfigError
from mvlt_jax.models import (
    HEAD_NAMES,
    compute_dtype,
    remat_policy,
    resolve_pyramid,
    word_embedding_grad,
)
from mvlt_jax.steps import LOSS_SCHEDULES
from mvlt_jax.train_state import INIT_FROM_MISMATCH

TRAIN_TASK = 'train'
SUMMARY_TASK = 'summary'
EVALUATION_TASKS = ('eval_retrieval', 'eval_recognition', 'reconstruct')
TASKS = (SUMMARY_TASK, TRAIN_TASK, *EVALUATION_TASKS)
# The image side must be a multiple of the pyramid's total downsampling (4 x 2 x 2 x 2).
IMAGE_SIZE_MULTIPLE = 32
CHECKPOINT_FILE_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors')


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def check_model(model) -> None:
  """``config.model`` (or a checkpoint's): names, sizes and heads."""
  try:
    resolve_pyramid(model)
    compute_dtype(model.dtype)
    word_embedding_grad(model, backend='cpu')
    remat_policy(model)
  except ValueError as error:
    raise ConfigError(str(error)) from None
  _require(
      bool(model.get('remat')) or not remat_policy(model),
      f'config.model.remat_policy={remat_policy(model)!r} applies to rematerialised blocks: '
      "set --config.model.remat=True as well (or remat_policy to '').",
  )
  heads = tuple(model.heads)
  _require(bool(heads), f'config.model.heads is empty; choose from {HEAD_NAMES}.')
  unknown = sorted(set(heads) - set(HEAD_NAMES))
  _require(not unknown, f'config.model.heads: unknown {unknown}; known: {HEAD_NAMES}.')
  size = model.image_size
  _require(
      isinstance(size, int) and size > 0 and size % IMAGE_SIZE_MULTIPLE == 0,
      f'config.model.image_size={size!r}: use a multiple of {IMAGE_SIZE_MULTIPLE} (the '
      'pyramid halves the image 5 times: patches of 4, then 2, 2, 2).',
  )
  _require(model.text_length > 0, f'config.model.text_length={model.text_length}: use >= 1.')


def check_config(config) -> None:
  """Every field of ``config`` that can be checked without data.

  Raises:
    ConfigError: the first field that is wrong, with its value and what it may be.
  """
  _require(config.task in TASKS, f'config.task={config.task!r}: choose one of {", ".join(TASKS)}.')
  if config.task == SUMMARY_TASK:
    check_model(config.model)
    return
  if config.task in EVALUATION_TASKS:
    _check_checkpoint_path('config.checkpoint', config.checkpoint, required=True)
    if config.eval.dtype:
      try:
        compute_dtype(config.eval.dtype)
      except ValueError as error:
        raise ConfigError(f'config.eval.dtype: {error}') from None
    _require(config.eval.batch_size > 0, f'config.eval.batch_size={config.eval.batch_size}.')
    return  # the dataset is the checkpoint's (evaluators.common.evaluation_config)
  check_model(config.model)
  m = config.masking
  _require(
      isinstance(m.image_unit, int)
      and m.image_unit > 0
      and config.model.image_size % m.image_unit == 0,
      f'config.masking.image_unit={m.image_unit!r} does not divide '
      f'config.model.image_size={config.model.image_size}.',
  )
  _require(0.0 <= m.image_ratio <= 1.0, f'config.masking.image_ratio={m.image_ratio}: in [0, 1].')
  _require(0.0 <= m.word_prob <= 1.0, f'config.masking.word_prob={m.word_prob}: in [0, 1].')
  _require(
      config.loss_schedule in LOSS_SCHEDULES,
      f'config.loss_schedule={config.loss_schedule!r}: choose one of {LOSS_SCHEDULES}.',
  )
  for field in ('global_batch_size', 'checkpoint_every', 'log_every'):
    value = config[field]
    _require(isinstance(value, int) and value > 0, f'config.{field}={value!r}: use >= 1.')
  _require(
      config.total_steps >= 0,
      f'config.total_steps={config.total_steps}: use >= 1, or 0 for num_epochs.',
  )
  _require(
      config.total_steps > 0 or config.num_epochs > 0,
      f'config.num_epochs={config.num_epochs} with config.total_steps=0 trains nothing: set '
      'one of them.',
  )
  _require(
      config.keep_checkpoints >= 0,
      f'config.keep_checkpoints={config.keep_checkpoints}: the latest N >= 1, or 0 for all.',
  )
  _require(
      config.validation_every >= 0,
      f'config.validation_every={config.validation_every}: use >= 1, or 0 for never.',
  )
  if config.validation_every:
    _require(
        config.validation_batches > 0,
        f'config.validation_batches={config.validation_batches}: use >= 1 (or '
        'config.validation_every=0).',
    )
  _require(
      config.best_mode in ('min', 'max'),
      f'config.best_mode={config.best_mode!r}: use min or max.',
  )
  _require(
      0.0 <= config.get('best_from_fraction', 0.0) <= 1.0,
      f'config.best_from_fraction={config.best_from_fraction}: a share of training in [0, 1].',
  )
  _require(
      config.dataset.repeated_sampling >= 1,
      f'config.dataset.repeated_sampling={config.dataset.repeated_sampling}: use >= 1.',
  )
  mismatch = config.get('init_from_mismatch', 'error')
  _require(
      mismatch in INIT_FROM_MISMATCH,
      f'config.init_from_mismatch={mismatch!r}: choose one of {", ".join(INIT_FROM_MISMATCH)}.',
  )
  if config.init_from:
    _check_checkpoint_path('config.init_from', config.init_from, required=False)
  _check_data_dir(config)


def check_devices(config) -> None:
  """``config.mesh`` and ``config.global_batch_size`` against the devices (call it after
  ``distributed.maybe_initialize``: it asks JAX for the devices, which starts the backend)."""
  try:
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_global_batch(config.global_batch_size, mesh)
  except ValueError as error:
    raise ConfigError(f'{error} (config.mesh, config.global_batch_size)') from None


def _check_checkpoint_path(field: str, path: str, required: bool) -> None:
  """A checkpoint folder (config.json and steps) or, where allowed, a PyTorch file."""
  _require(bool(path) or not required, f'{field} is empty: give a checkpoint directory.')
  if os.path.isfile(path):
    _require(
        not required and path.endswith(CHECKPOINT_FILE_SUFFIXES),
        f'{field}={path} is a file, not a checkpoint directory'
        + ('' if required else f' or a PyTorch file ({", ".join(CHECKPOINT_FILE_SUFFIXES)})')
        + '.',
    )
    return
  _require(os.path.isdir(path), f'{field}={path}: no such file or directory.')
  has_steps = any(name.isdigit() for name in os.listdir(path))
  is_step = os.path.basename(os.path.normpath(path)).isdigit()
  _require(
      has_steps or is_step,
      f'{field}={path} is not a checkpoint: it holds no step folders (a checkpoint folder '
      'is WORKDIR/checkpoints, WORKDIR/best_checkpoint or the output of `convert '
      'from-torch`).',
  )


def _check_data_dir(config) -> None:
  data_dir = config.dataset.data_dir
  _require(bool(data_dir), 'config.dataset.data_dir is empty.')
  _require(
      not os.path.isfile(data_dir),
      f'config.dataset.data_dir={data_dir} is a file; give a directory.',
  )
  dataset_dir = os.path.join(data_dir, config.dataset.name)
  if config.dataset.auto_prepare and not os.path.isdir(dataset_dir):
    _require(
        _can_create(data_dir),
        f'config.dataset.data_dir={data_dir}: {dataset_dir} is not prepared and cannot be '
        'written here (permissions); prepare it elsewhere or choose a writable data_dir.',
    )


def _can_create(path: str) -> bool:
  """Whether ``path`` is a writable directory or could be created as one."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      return False
    path = parent
  return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def check_workdir(workdir: str) -> None:
  """The workdir exists (or is created) and can be written.

  Raises:
    ConfigError: it is a file, or cannot be created or written.
  """
  _require(bool(workdir), '--workdir is empty.')
  _require(not os.path.isfile(workdir), f'--workdir={workdir} is a file; give a directory.')
  try:  # every process (the same folder on a shared file system: exist_ok)
    os.makedirs(workdir, exist_ok=True)
  except OSError as error:
    raise ConfigError(f'--workdir={workdir} cannot be created: {error.strerror}.') from None
  _require(
      os.access(workdir, os.W_OK | os.X_OK),
      f'--workdir={workdir} cannot be written (permissions).',
  )
