"""Checkpoints with orbax: the training state, the data position, config and tokenizer.

Layout of a checkpoint directory (``WORKDIR/checkpoints``, or the output of the converter):

  checkpoints/
    config.json          the run's resolved config (ml_collections JSON)
    tokenizer/           the tokenizer the run used (when there is one)
    <step>/state/        orbax StandardSave of the TrainState as a dict (params,
                         batch_stats, and for training checkpoints opt_state, step, rng)
    <step>/data/         JSON: data iterator position and bookkeeping
"""

import builtins
import dataclasses
import json
import os
import shutil
from typing import Any, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = 'config.json'
TOKENIZER_DIR = 'tokenizer'


class CheckpointNotFoundError(FileNotFoundError):
  pass


def state_to_dict(state) -> dict:
  return {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}


def make_manager(
    directory: str,
    keep: int = 3,
    async_save: bool = True,
    best_metric: Optional[str] = None,
    best_mode: str = 'max',
    barrier_prefix: Optional[str] = None,
) -> ocp.CheckpointManager:
  """An orbax manager of ``directory``. Managers that save at the same steps in one
  multi-process run need distinct ``barrier_prefix`` es: orbax names its cross-process
  barriers after the step, and two managers sharing them deadlock."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=True,
      enable_async_checkpointing=async_save,
      best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
      best_mode=best_mode,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=barrier_prefix
      ),
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state,
    data_state: dict,
    metrics: Optional[dict] = None,
    force: bool = False,
) -> bool:
  """Saves (asynchronously) the state and the data position at ``step``."""
  return manager.save(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardSave(state_to_dict(state)), data=ocp.args.JsonSave(data_state)
      ),
      metrics=metrics,
      force=force,
  )


def restore(manager: ocp.CheckpointManager, step: int, abstract_state) -> tuple[Any, dict]:
  """Restores the state (with the shardings of ``abstract_state``) and the data position."""
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_to_dict(abstract_state))
  restored = manager.restore(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()),
  )
  return abstract_state.replace(**restored['state']), restored['data']


def write_run_files(
    directory: str, config: ml_collections.ConfigDict, tokenizer_dir: Optional[str]
) -> None:
  """Writes config.json and a copy of the tokenizer beside the checkpoints (process 0)."""
  if jax.process_index() != 0:
    return
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, CONFIG_FILE + '.tmp')
  with builtins.open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(tmp, os.path.join(directory, CONFIG_FILE))
  if tokenizer_dir and os.path.isdir(tokenizer_dir):
    target = os.path.join(directory, TOKENIZER_DIR)
    if os.path.abspath(target) != os.path.abspath(tokenizer_dir):
      shutil.copytree(tokenizer_dir, target, dirs_exist_ok=True)


def read_config(directory: str) -> ml_collections.ConfigDict:
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointNotFoundError(
        f'{path} is missing: {directory} is not a mvlt-jax ' 'checkpoint directory.'
    )
  with builtins.open(path) as f:
    return ml_collections.ConfigDict(_tuples_from_lists(json.load(f)))


def _tuples_from_lists(tree):
  if isinstance(tree, dict):
    return {k: _tuples_from_lists(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples_from_lists(v) for v in tree)
  return tree


def _resolve(path: str, step: Optional[int]) -> tuple[str, int]:
  """(manager directory, step) for a manager directory or a ``.../<step>`` directory."""
  path = os.path.abspath(path)
  base = os.path.basename(path.rstrip('/'))
  if base.isdigit() and os.path.exists(os.path.join(os.path.dirname(path), CONFIG_FILE)):
    return os.path.dirname(path), int(base)
  if not os.path.isdir(path):
    raise CheckpointNotFoundError(f'No checkpoint directory at {path}.')
  steps = ocp.utils.checkpoint_steps(path)
  if not steps:
    raise CheckpointNotFoundError(f'{path} holds no checkpoint steps.')
  if step is None:
    return path, max(steps)
  if step not in steps:
    raise CheckpointNotFoundError(f'{path} has no step {step}; it has {sorted(steps)}.')
  return path, step


def load_variables(path: str, step: Optional[int] = None) -> tuple[dict, int]:
  """``({'params', 'batch_stats'}, step)`` from a training or converted checkpoint."""
  directory, step = _resolve(path, step)
  item = os.path.join(directory, str(step), 'state')
  checkpointer = ocp.StandardCheckpointer()
  # Restore onto this process's first device, whatever topology the run was saved from.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=device),
      checkpointer.metadata(item).item_metadata.tree,
  )
  restored = checkpointer.restore(item, target)
  variables = {'params': restored['params'], 'batch_stats': restored.get('batch_stats', {})}
  return variables, step


@dataclasses.dataclass(frozen=True)
class OpenedCheckpoint:
  """A checkpoint folder, opened: what evaluation, conversion and inference read."""

  path: str  # the path asked for, absolute (the checkpoint folder or one of its steps)
  directory: str  # the folder holding config.json, the tokenizer and the steps
  step: int
  config: Optional[ml_collections.ConfigDict]  # config.json; None if absent and not required
  variables: dict  # {'params', 'batch_stats'} on this process's first device
  tokenizer: Any  # the tokenizer saved beside, or None


def open(
    path: str,
    step: Optional[int] = None,
    *,
    require_config: bool = True,  # pylint: disable=redefined-builtin
    load_tokenizer: bool = True,
) -> OpenedCheckpoint:
  """Opens a training or converted checkpoint: ``path`` is its folder (the latest step, or
  ``step``) or a ``<step>`` folder inside it.

  Raises:
    CheckpointNotFoundError: no checkpoint there, no such step, or (``require_config``)
      no config.json.
  """
  directory, step = _resolve(path, step)
  config = None
  if require_config or os.path.exists(os.path.join(directory, CONFIG_FILE)):
    config = read_config(directory)
  variables, _ = load_variables(directory, step)
  tokenizer = None
  tokenizer_dir = os.path.join(directory, TOKENIZER_DIR)
  if load_tokenizer and os.path.isdir(tokenizer_dir):
    from input_pipeline.tokenizer import load_tokenizer as load  # pylint: disable=import-outside-toplevel

    tokenizer = load(tokenizer_dir)
  return OpenedCheckpoint(
      path=os.path.abspath(path),
      directory=directory,
      step=step,
      config=config,
      variables=variables,
      tokenizer=tokenizer,
  )


def load_for_inference(path: str, step: Optional[int] = None):
  """(config, variables, tokenizer or None) of a checkpoint directory."""
  opened = open(path, step)
  return opened.config, opened.variables, opened.tokenizer


def save_variables(
    directory: str,
    variables: dict,
    config: ml_collections.ConfigDict,
    step: int = 0,
    tokenizer_dir: Optional[str] = None,
) -> str:
  """Writes a variables-only checkpoint (e.g. converted from PyTorch) that ``init_from``,
  evaluation and ``Predictor.from_checkpoint`` read. Returns the step directory."""
  write_run_files(directory, config, tokenizer_dir)
  manager = make_manager(directory, keep=1, async_save=False)
  manager.save(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardSave(
              {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}
          ),
          data=ocp.args.JsonSave({'step': step, 'source': 'variables'}),
      ),
  )
  manager.wait_until_finished()
  manager.close()
  return os.path.join(os.path.abspath(directory), str(step))
