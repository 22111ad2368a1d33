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
import datetime
import json
import os
import shutil
from typing import Any, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

from mvlt_jax.errors import MVLTError

CONFIG_FILE = 'config.json'
TOKENIZER_DIR = 'tokenizer'
# Where training moves steps that do not restore (beside WORKDIR/checkpoints), so that the run
# resumes from an older step without deleting the damaged one.
UNREADABLE_DIR = 'unreadable_checkpoints'


class CheckpointError(MVLTError):
  """A checkpoint that cannot be used: unreadable, or of another model or tokenizer."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
  """No checkpoint where one was asked for."""


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
  """An orbax manager of ``directory`` keeping the latest ``keep`` steps (0: all of them).
  Managers that save at the same steps in one multi-process run need distinct
  ``barrier_prefix`` es: orbax names its cross-process barriers after the step, and two
  managers sharing them deadlock. Temporary folders of interrupted saves are removed."""
  if keep < 0:
    raise ValueError(f'keep={keep}: keep the latest N >= 1 checkpoints, or 0 for all.')
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep or None,
      create=True,
      cleanup_tmp_directories=True,
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


def one_line_reason(error: BaseException, limit: int = 240) -> str:
  """``Type: first line`` of an exception (orbax and TensorStore write pages)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  text = f'{type(error).__name__}: {lines[0] if lines else ""}'
  return text if len(text) <= limit else text[: limit - 3] + '...'


@dataclasses.dataclass(frozen=True)
class Restored:
  state: Any
  data_state: dict
  step: int
  unreadable: tuple[tuple[int, str], ...]  # (step, reason) of newer steps that did not restore


def restore_latest(manager: ocp.CheckpointManager, abstract_state) -> Optional[Restored]:
  """Restores the newest step that restores (None when there is no step).

  A step that fails (truncated or missing files, a missing item) is passed over and
  reported in ``Restored.unreadable``; see ``put_aside``.

  Raises:
    CheckpointError: there are steps but none restores (the message lists each one's reason).
  """
  unreadable = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state, data_state = restore(manager, step, abstract_state)
    except Exception as error:  # pylint: disable=broad-except  (orbax raises many kinds)
      unreadable.append((step, one_line_reason(error)))
      continue
    return Restored(state, data_state, step, tuple(unreadable))
  if not unreadable:
    return None
  reasons = '; '.join(f'step {step}: {reason}' for step, reason in unreadable)
  raise CheckpointError(
      f'No checkpoint in {manager.directory} restores ({reasons}). Nothing was changed: move '
      'that folder aside to train from the start, or use another --workdir.'
  )


def put_aside(manager: ocp.CheckpointManager, steps, destination: str) -> list[str]:
  """Moves ``steps`` out of the manager's folder into ``destination`` (process 0), so that new
  saves of those step numbers do not collide with them; returns the new paths."""
  moved = []
  if jax.process_index() == 0:
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    os.makedirs(destination, exist_ok=True)
    for step in steps:
      target = os.path.join(destination, f'{step}-{stamp}')
      shutil.move(os.path.join(os.fspath(manager.directory), str(step)), target)
      moved.append(target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    multihost_utils.sync_global_devices('unreadable checkpoints put aside')
  manager.reload()
  return moved


def parameter_shapes(directory: str, step: int) -> dict[str, tuple[int, ...]]:
  """{'a/b/kernel': shape} of the parameters saved at ``step`` (from orbax's metadata)."""
  item = os.path.join(directory, str(step), 'state')
  tree = ocp.StandardCheckpointer().metadata(item).item_metadata.tree
  return flat_shapes(tree.get('params', {}))


def flat_shapes(tree) -> dict[str, tuple[int, ...]]:
  """{'a/b/kernel': shape} of a nested dict of arrays (or array metadata)."""
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = '/'.join(str(getattr(entry, 'key', entry)) for entry in path)
    flat[key] = tuple(leaf.shape)
  return flat


def check_resumable(
    directory: str, config: ml_collections.ConfigDict, tokenizer, abstract_params
) -> None:
  """Refuses to resume the steps in ``directory`` with another model or tokenizer.

  The parameter shapes saved at the newest step with readable metadata must equal the
  configured model's (the message names the ``config.model`` fields that differ), and the
  tokenizer saved beside the steps must be the dataset's (same fingerprint). Nothing is
  written: the run files are replaced only after a successful restore.

  Raises:
    CheckpointError: the checkpoint is of another model or another tokenizer.
  """
  steps = ocp.utils.checkpoint_steps(directory) if os.path.isdir(directory) else []
  if not steps:
    return
  saved_config = None
  if os.path.exists(os.path.join(directory, CONFIG_FILE)):
    saved_config = read_config(directory)
  saved_tokenizer = os.path.join(directory, TOKENIZER_DIR)
  if tokenizer is not None and os.path.isdir(saved_tokenizer):
    from input_pipeline.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel

    saved_fingerprint = load_tokenizer(saved_tokenizer).fingerprint
    if saved_fingerprint != tokenizer.fingerprint:
      raise CheckpointError(
          f'{directory} was trained with the tokenizer in {saved_tokenizer} (fingerprint '
          f"{saved_fingerprint[:12]}...), this run's dataset {config.dataset.name} in "
          f'{config.dataset.data_dir} has another one ({tokenizer.fingerprint[:12]}...): the '
          'same token ids would mean other words. Resume with the data of that run, or use '
          'another --workdir (--config.init_from can start from that checkpoint).'
      )
  wanted = flat_shapes(abstract_params)
  for step in sorted(steps, reverse=True):
    try:
      saved = parameter_shapes(directory, step)
    except Exception:  # pylint: disable=broad-except  (unreadable: restore_latest reports it)
      continue
    if saved == wanted:
      return
    differing = sorted(key for key in set(saved) | set(wanted) if saved.get(key) != wanted.get(key))
    shapes = ', '.join(f'{key}: {saved.get(key)} vs {wanted.get(key)}' for key in differing[:3])
    fields = ''
    if saved_config is not None:
      before, now = saved_config.model.to_dict(), config.model.to_dict()
      changed = [
          f'model.{key}={before.get(key)!r} there, {now.get(key)!r} here'
          for key in sorted(set(before) | set(now))
          if _plain(before.get(key)) != _plain(now.get(key))
      ]
      fields = f' Config fields that differ: {"; ".join(changed) or "none"}.'
    raise CheckpointError(
        f'{directory} holds another model than the configured one ({len(differing)} parameters '
        f"differ, e.g. {shapes}; checkpoint vs config).{fields} Resume with the checkpoint's "
        'model config, or use another --workdir (--config.init_from can start from it).'
    )


def _plain(value):
  """Tuples and lists compare equal (JSON turns one into the other)."""
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  return value


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
        f'{path} is missing: {directory} is not a mvlt-jax checkpoint directory.'
    )
  try:
    with builtins.open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError
    raise CheckpointError(f'{path} cannot be read: {one_line_reason(error)}') from error
  if not isinstance(saved, dict) or not isinstance(saved.get('model'), dict):
    raise CheckpointError(f'{path} is not a mvlt-jax config (no "model" section).')
  return ml_collections.ConfigDict(_tuples_from_lists(saved))


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
  try:
    target = jax.tree.map(
        lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=device),
        checkpointer.metadata(item).item_metadata.tree,
    )
    restored = checkpointer.restore(item, target)
  except Exception as error:  # pylint: disable=broad-except  (orbax raises many kinds)
    raise CheckpointError(f'{item} does not restore: {one_line_reason(error)}') from error
  if not isinstance(restored, dict) or 'params' not in restored:
    raise CheckpointError(f'{item} holds no model parameters (no "params").')
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
