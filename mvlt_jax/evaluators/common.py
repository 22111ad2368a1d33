"""What the evaluation tasks share: processes, checkpoint, split, devices, split passes, report.

A task starts with :func:`prepare_evaluation`: the checkpoint, the config it evaluates with
(the dataset of the checkpoint's config.json, fields given on the command line replacing
theirs: :func:`evaluation_config`) and the evaluation split. Every process works on its contiguous share of the items and the per-item results are
gathered once (:func:`process_slice`, :func:`gather_results`); process 0 writes
``WORKDIR/results/<name>.json`` and prints a markdown table. The protocols are in
docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import tempfile
from typing import Any, Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np
from absl import flags
from absl import logging
from ml_collections import config_flags
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mvlt_jax import checkpoint as checkpoint_lib
from mvlt_jax import data as data_lib
from mvlt_jax import distributed, metrics
from mvlt_jax.errors import ConfigError, MVLTError
from mvlt_jax.models import build_model, compute_dtype

RESULTS_DIR = 'results'
CHECKPOINTS_DIR = 'checkpoints'
# The dataset the paper's results were measured on: with it, the tables put the paper's
# numbers beside ours.
PAPER_DATASET = 'fashion_gen'


class EvaluationError(MVLTError):
  """An evaluation cannot run: wrong checkpoint for the task, data that does not fit it."""


class DataTooSmallError(EvaluationError):
  """The split has fewer items than the evaluation settings ask for.

  ``overrides`` holds settings that fit the data (``{'eval.num_candidates': 24}``): the
  command printed after training (``demo.run_demo_evaluation``) adds them.
  """

  def __init__(self, message: str, overrides: Optional[dict[str, Any]] = None):
    super().__init__(message)
    self.overrides = dict(overrides or {})


# ----------------------------------------------------------------------------- processes


def process_slice(num_items: int, process_index: int, process_count: int) -> slice:
  """The contiguous share of ``num_items`` that process ``process_index`` works on.

  Shares differ by at most one item (the first ``num_items % process_count`` processes
  take one more); together they cover every item exactly once.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} outside [0, {process_count}).')
  base, extra = divmod(num_items, process_count)
  start = process_index * base + min(process_index, extra)
  return slice(start, start + base + (1 if process_index < extra else 0))


def process_capacity(num_items: int, process_count: int) -> int:
  """The largest share of :func:`process_slice`: the padded size every process gathers."""
  return -(-num_items // process_count)


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """Zero-pads the leading axis of ``array`` to ``rows`` rows."""
  array = np.asarray(array)
  if len(array) > rows:
    raise ValueError(f'{len(array)} rows do not fit in {rows}.')
  padding = np.zeros((rows - len(array),) + array.shape[1:], array.dtype)
  return np.concatenate([array, padding])


def merge_process_results(
    stacked: dict[str, np.ndarray], valid: np.ndarray
) -> dict[str, np.ndarray]:
  """``{key: [P, capacity, ...]}`` with ``valid`` [P, capacity] -> ``{key: [n, ...]}``.

  Keeps the valid rows, in process order then row order.
  """
  mask = np.asarray(valid, bool).reshape(-1)
  return {
      key: np.asarray(value).reshape((-1,) + np.shape(value)[2:])[mask]
      for key, value in stacked.items()
  }


def _allgather(tree):
  if jax.process_count() == 1:
    return jax.tree.map(lambda x: np.asarray(x)[None], tree)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree))


def gather_results(
    local: dict[str, np.ndarray],
    valid: np.ndarray,
    capacity: int,
    allgather: Optional[Callable[[Any], Any]] = None,
) -> dict[str, np.ndarray]:
  """The valid rows of every process, on every process.

  Args:
    local: this process's per-item arrays, each with ``len(valid)`` rows (numeric).
    valid: bool [n]: False on rows that are padding.
    capacity: rows every process pads to (the same on all, >= any ``n``).
    allgather: stacks a pytree of every process on a new leading axis (default:
      ``process_allgather``; tests pass a simulated one).

  Note: with JAX's default 32-bit mode, 64-bit values come back as 32-bit ones.
  """
  valid = np.asarray(valid, bool)
  for key, value in local.items():
    if len(value) != len(valid):
      raise ValueError(f'{key} has {len(value)} rows, valid {len(valid)}.')
  padded = {key: pad_rows(value, capacity) for key, value in local.items()}
  gathered = (allgather or _allgather)({'values': padded, 'valid': pad_rows(valid, capacity)})
  return merge_process_results(gathered['values'], gathered['valid'])


def sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    multihost_utils.sync_global_devices(name)


def maybe_initialize_distributed(config) -> None:
  if not jax.distributed.is_initialized():
    distributed.maybe_initialize(config.distributed)


# ----------------------------------------------------------------------------- checkpoint


@dataclasses.dataclass
class LoadedCheckpoint:
  """A checkpoint to evaluate: where it came from, its model and its variables."""

  path: str
  step: int
  model_config: ml_collections.ConfigDict
  variables: dict
  tokenizer: Any  # input_pipeline.tokenizer.Tokenizer or None
  masking_config: Optional[ml_collections.ConfigDict] = None  # how it was pre-trained
  # The dataset it was trained on (config.json's ``dataset``; None when it has none) and
  # that file.
  dataset_config: Optional[ml_collections.ConfigDict] = None
  config_file: str = ''

  def model(self, heads: Sequence[str], dtype: str = ''):
    """The checkpoint's model with only ``heads`` (and ``dtype`` when given)."""
    overrides = dict(heads=tuple(heads))
    if dtype:
      try:
        overrides['dtype'] = compute_dtype(dtype)
      except ValueError as e:
        raise ConfigError(f'eval.dtype: {e}') from e
    return build_model(self.model_config, **overrides)


def checkpoint_path(config, workdir: str) -> str:
  return config.checkpoint or os.path.join(workdir, CHECKPOINTS_DIR)


def load_checkpoint(path: str, required_heads: Sequence[str] = ()) -> LoadedCheckpoint:
  """Variables, model config and tokenizer of a checkpoint (training, step or converted).

  Raises:
    EvaluationError: the checkpoint's model lacks one of ``required_heads``.
  """
  opened = checkpoint_lib.open(path)
  path, run_config = opened.path, opened.config
  model_config = run_config.model
  missing = [head for head in required_heads if head not in model_config.heads]
  if missing:
    raise EvaluationError(
        f"{path}: the checkpoint's model has the heads {tuple(model_config.heads)}; this task "
        f'needs {tuple(required_heads)} (missing {missing}). Retrieval and reconstruction '
        'need a pre-training checkpoint, recognition a fine-tuned one.'
    )
  return LoadedCheckpoint(
      path,
      int(opened.step),
      model_config,
      opened.variables,
      opened.tokenizer,
      run_config.get('masking'),
      run_config.get('dataset'),
      os.path.join(opened.directory, checkpoint_lib.CONFIG_FILE),
  )


# ----------------------------------------------------------------------------- config

DATASET_FIELD = 'dataset'


def command_line_fields(config) -> Optional[list[str]]:
  """The fields given as ``--config.FIELD=VALUE`` on main.py's command line (``'task'``,
  ``'dataset.data_dir'``, ...) when ``config`` is its ``--config`` flag's value; None for a
  config built otherwise (in Python)."""
  try:
    flag = flags.FLAGS['config']
  except KeyError:
    return None
  if not flags.FLAGS.is_parsed() or flag.value is not config:
    return None
  try:
    return list(config_flags.get_override_values(flag))
  except (TypeError, flags.Error):  # not a config_flags flag, or not parsed
    return None


def config_file_name(config) -> str:
  """The ``--config`` file of main.py's command line when ``config`` is its value, else
  ``CONFIG``."""
  if command_line_fields(config) is None:
    return 'CONFIG'
  return config_flags.get_config_filename(flags.FLAGS['config'])


def _field(tree: dict, path: Sequence[str]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def evaluation_config(
    config, loaded: LoadedCheckpoint, given: Optional[Sequence[str]] = None
) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """The config an evaluation task runs with, and where its dataset came from.

  The dataset (name, data_dir, splits, tokenizer settings, prepare options: the whole
  ``config.dataset``) is the checkpoint's (its config.json), so that an evaluation needs no
  dataset flags; a field given explicitly replaces the checkpoint's. The model is always
  the checkpoint's (``loaded.model_config``); ``config.eval`` and the rest come from
  ``config``.

  Args:
    config: the task's config.
    loaded: the checkpoint.
    given: the explicitly given fields, as paths (``'dataset.data_dir'``,
      ``'dataset.prepare_options.num_products'``); default: those of main.py's command line
      (:func:`command_line_fields`). A config built in Python (not main.py's ``--config``)
      counts as given entirely: its dataset is used as it is.

  Returns:
    (config, source): a copy of ``config`` with the dataset filled in, and
    ``{'config_file': the checkpoint's config.json or '', 'given': [dataset fields given]}``
    (``results/<task>.json`` records it as ``dataset_source``).
  """
  fields = command_line_fields(config) if given is None else list(given)
  result = ml_collections.ConfigDict(config.to_dict())
  if fields is None or loaded.dataset_config is None:
    return result, {'config_file': '', 'given': ['dataset']}
  ignored = [f for f in fields if f == 'model' or f.startswith('model.')]
  if ignored:
    logging.warning(
        "evaluation ignores %s: the model is the checkpoint's (%s); eval.dtype sets the "
        'compute dtype.',
        ', '.join(f'--config.{f}' for f in ignored),
        loaded.config_file,
    )
  dataset_fields = [f for f in fields if f == DATASET_FIELD or f.startswith(DATASET_FIELD + '.')]
  given_dict = config.to_dict()
  # Fields an older config.json lacks keep the config's values.
  merged = {**given_dict[DATASET_FIELD], **loaded.dataset_config.to_dict()}
  for field in dataset_fields:
    path = field.split('.')[1:]
    if not path:
      merged = given_dict[DATASET_FIELD]
      continue
    target = merged
    for key in path[:-1]:
      target = target.setdefault(key, {})
    target[path[-1]] = _field(given_dict[DATASET_FIELD], path)
  result.dataset = ml_collections.ConfigDict(merged)
  source = {
      'config_file': loaded.config_file,
      'given': [f.split('.', 1)[1] if '.' in f else f for f in dataset_fields],
  }
  logging.info(
      'evaluation dataset: %s in %s, from %s%s',
      merged.get('name'),
      merged.get('data_dir'),
      loaded.config_file,
      f' (given on the command line: {", ".join(source["given"])})' if dataset_fields else '',
  )
  return result, source


def prepare_evaluation(
    config, workdir: str, required_heads: Sequence[str]
) -> tuple[ml_collections.ConfigDict, LoadedCheckpoint, 'EvalSplit']:
  """What every task starts with: (the config it runs with, the checkpoint, the split).

  The checkpoint is ``config.checkpoint`` or ``workdir/checkpoints``; the config is
  :func:`evaluation_config`'s; the split :func:`open_eval_split`'s.
  """
  loaded = load_checkpoint(checkpoint_path(config, workdir), required_heads)
  config, source = evaluation_config(config, loaded)
  return config, loaded, open_eval_split(config, loaded, source)


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class EvalSplit:
  """The prepared split an evaluation reads."""

  data_dir: str
  name: str
  split: str
  image_size: int
  num_examples: int
  class_names: dict  # {'main': [...], 'sub': [...]}
  source: dict = dataclasses.field(default_factory=dict)  # evaluation_config's

  @property
  def description(self) -> str:
    return f'{self.name} split {self.split!r} in {self.data_dir}'


def open_eval_split(config, loaded: LoadedCheckpoint, source: Optional[dict] = None) -> EvalSplit:
  """Opens (preparing it first when missing and allowed) the split ``config`` evaluates on.

  ``source`` is :func:`evaluation_config`'s: a relative ``data_dir`` taken from the
  checkpoint is relative to the directory training ran in; when the dataset is not there,
  nothing is prepared and the error says so.

  Raises:
    EvaluationError: the split's text length or tokenizer differs from the checkpoint's, or
      the checkpoint's relative data_dir holds no dataset here.
  """
  ds = config.dataset
  split = config.eval.split or ds.eval_split
  source = source or {}
  from_checkpoint = source.get('config_file') and 'data_dir' not in source.get('given', ())
  dataset_dir = os.path.join(ds.data_dir, ds.name)
  if from_checkpoint and not os.path.isabs(ds.data_dir) and not os.path.isdir(dataset_dir):
    raise EvaluationError(
        f"the checkpoint's {source['config_file']} has dataset.data_dir={ds.data_dir!r}, "
        'relative to the directory training ran in; here that is '
        f'{os.path.abspath(dataset_dir)}, which does not exist. Run from that directory or '
        f'give --config.dataset.data_dir=DIR (the folder holding {ds.name}/).'
    )
  prepared = data_lib.open_eval_split(config, split, loaded.model_config)
  where = f'{ds.name} split {split!r} in {ds.data_dir}'
  text_length = data_lib.text_length(prepared)
  if text_length != loaded.model_config.text_length:
    raise EvaluationError(
        f'{where} has captions of {text_length} tokens, the checkpoint {loaded.path} was '
        f'trained with text_length={loaded.model_config.text_length} (padding takes part in '
        "attention, so the lengths must agree): prepare the data with the checkpoint's length."
    )
  _check_tokenizer(loaded, prepared.dataset_dir, where)
  return EvalSplit(
      ds.data_dir,
      ds.name,
      split,
      int(loaded.model_config.image_size),
      prepared.num_examples,
      data_lib.class_names(prepared),
      dict(source),
  )


def _check_tokenizer(loaded: LoadedCheckpoint, dataset_dir: str, where: str) -> None:
  """Refuses data tokenized by another tokenizer than the checkpoint's (when both are known)."""
  metadata_file = os.path.join(dataset_dir, 'metadata.json')
  if loaded.tokenizer is None or not os.path.exists(metadata_file):
    return
  with open(metadata_file) as f:
    recorded = (json.load(f).get('tokenizer') or {}).get('fingerprint')
  if recorded and recorded != loaded.tokenizer.fingerprint:
    raise EvaluationError(
        f'{where} was tokenized with another tokenizer (fingerprint {recorded[:12]}...) than '
        f'the checkpoint {loaded.path} (fingerprint {loaded.tokenizer.fingerprint[:12]}...).'
    )


def check_token_ids(input_ids: np.ndarray, vocab_size: int, where: str) -> None:
  """Token ids must index the model's vocabulary (JAX would turn others into NaN)."""
  if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
    raise EvaluationError(
        f'{where}: token ids reach {int(input_ids.max())} (min {int(input_ids.min())}) but the '
        f"model's vocabulary has {vocab_size} entries: the data was tokenized for another "
        'model.'
    )


def num_workers(config) -> Optional[int]:
  """Threads of tf.data's private pool (None: TensorFlow's default, the usable cores)."""
  return config.eval.num_workers or None


# ----------------------------------------------------------------------------- devices


class LocalRunner:
  """Runs jit'd functions on this process's devices: rows split over them, variables
  replicated. Row counts are padded to a multiple of the local device count."""

  def __init__(self, variables: dict):
    devices = np.array(jax.local_devices())
    self.mesh = jax.sharding.Mesh(devices, ('rows',))
    self.row_sharding = NamedSharding(self.mesh, P('rows'))
    self.variables = jax.device_put(variables, NamedSharding(self.mesh, P()))
    self.num_devices = devices.size

  def padded(self, rows: int) -> int:
    return -(-rows // self.num_devices) * self.num_devices

  def put_rows(self, arrays: dict[str, np.ndarray], rows: int) -> dict[str, jax.Array]:
    """Zero-pads every array to ``rows`` rows and splits them over the local devices."""
    return {
        key: jax.device_put(pad_rows(value, rows), self.row_sharding)
        for key, value in arrays.items()
    }


# ----------------------------------------------------------------------------- split passes


def run_over_split(
    config,
    data: EvalSplit,
    runner: LocalRunner,
    step: Callable,
    *,
    input_keys: Sequence[str],
    host_keys: Sequence[str] = (),
    output_keys: Sequence[str],
    picture_keys: Sequence[str] = (),
    num_pictures: int = 0,
    vocab_size: int,
) -> tuple[dict, dict]:
  """Runs ``step(variables, *inputs, record_index)`` over this process's rows of the split.

  Rows are the evaluation batches of ``pipeline.eval_iterator`` (global batch
  ``eval.batch_size``; the first ``eval.max_examples`` records when > 0). Returns the
  per-record outputs (``output_keys`` of the step, ``host_keys`` of the batch, and
  ``record_index``) of every process, sorted by record index, and the ``picture_keys``
  outputs of the first ``num_pictures`` records.
  """
  ev = config.eval
  process_index, process_count = jax.process_index(), jax.process_count()
  local_batch = data_lib.local_batch_size(ev.batch_size, process_count)
  limit = min(data.num_examples, ev.max_examples) if ev.max_examples > 0 else data.num_examples
  num_steps = -(-limit // ev.batch_size)
  if num_steps == 0:
    return {}, {}
  rows = runner.padded(local_batch)
  batches = data_lib.eval_batches(
      data.data_dir,
      data.name,
      data.split,
      ev.batch_size,
      image_size=data.image_size,
      prefetch=ev.prefetch,
      num_workers=num_workers(config),
  )
  collected = {key: [] for key in (*output_keys, *host_keys, 'record_index', 'valid')}
  pictures = {key: [] for key in (*picture_keys, 'record_index')}

  def fetch(outputs, record_index, valid, batch):
    for key in output_keys:
      collected[key].append(np.asarray(outputs[key])[:local_batch])
    for key in host_keys:
      collected[key].append(batch[key])
    collected['record_index'].append(record_index)
    collected['valid'].append(valid)
    wanted = valid & (record_index < num_pictures)
    for key in picture_keys:  # zero rows where this process holds none of the first records
      pictures[key].append(np.asarray(outputs[key])[:local_batch][wanted])
    pictures['record_index'].append(record_index[wanted])

  pending = None
  try:
    for step_index in range(num_steps):
      batch = next(batches)
      # eval_iterator's layout: global batch s holds records [s*G, (s+1)*G), this process
      # the slice starting at s*G + p*B.
      record_index = (
          step_index * ev.batch_size + process_index * local_batch + np.arange(local_batch)
      )
      valid = batch['valid'] & (record_index < limit)
      check_token_ids(batch['input_ids'][valid], vocab_size, data.description)
      inputs = runner.put_rows({key: batch[key] for key in input_keys}, rows)
      record_index_device = runner.put_rows({'i': record_index.astype(np.int32)}, rows)['i']
      outputs = step(runner.variables, *inputs.values(), record_index_device)
      if pending is not None:
        fetch(*pending)
      pending = (outputs, record_index, valid, batch)
    fetch(*pending)
  finally:
    batches.close()

  valid = np.concatenate(collected.pop('valid'))
  local = {key: np.concatenate(values) for key, values in collected.items()}
  gathered = _sorted_by_record(gather_results(local, valid, num_steps * local_batch))
  picture_rows = {}
  if num_pictures and picture_keys:
    local_pictures = {key: np.concatenate(values) for key, values in pictures.items()}
    count = len(local_pictures['record_index'])
    picture_rows = _sorted_by_record(
        gather_results(local_pictures, np.ones(count, bool), num_pictures)
    )
  return gathered, picture_rows


def _sorted_by_record(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  order = np.argsort(rows['record_index'], kind='stable')
  return {key: value[order] for key, value in rows.items()}


# ----------------------------------------------------------------------------- report


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ['| ' + ' | '.join(map(str, header)) + ' |', '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows]
  return '\n'.join(lines)


def percent(value: Optional[float], std: Optional[float] = None) -> str:
  if value is None:
    return '-'
  text = f'{100 * value:.1f}'
  return text + (f' ± {100 * std:.1f}' if std else '')


def _json_ready(tree):
  if isinstance(tree, dict):
    return {str(k): _json_ready(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_json_ready(v) for v in tree]
  if isinstance(tree, (bool, np.bool_)):
    return bool(tree)
  if isinstance(tree, (float, np.floating)):
    return metrics.as_json_number(tree)
  if isinstance(tree, np.integer):
    return int(tree)
  if isinstance(tree, np.ndarray):
    return _json_ready(tree.tolist())
  return tree


def write_json(path: str, result: dict) -> None:
  """Writes ``result`` as JSON atomically (inf / NaN become null)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile('w', dir=directory, suffix='.tmp', delete=False) as f:
    json.dump(_json_ready(result), f, indent=2)
  os.replace(f.name, path)


def result_header(config, loaded: LoadedCheckpoint, data: EvalSplit, task: str) -> dict[str, Any]:
  return {
      'task': task,
      'checkpoint': loaded.path,
      'step': loaded.step,
      'dataset': data.name,
      'split': data.split,
      'data_dir': os.path.abspath(data.data_dir),
      'model': loaded.model_config.variant,
      'dtype': config.eval.dtype or loaded.model_config.dtype,
      'dataset_source': data.source,
  }


def hand_command(config, workdir: str, task: str, overrides: Optional[dict] = None) -> str:
  """The main.py command that runs ``task`` on the checkpoint of ``config`` / ``workdir``:
  the ``eval.*`` settings given on the command line, then ``overrides``."""
  settings = {
      field: _field(config.to_dict(), field.split('.'))
      for field in command_line_fields(config) or ()
      if field.startswith('eval.')
  }
  settings.update(overrides or {})
  words = [
      'python main.py',
      shlex.quote(f'--config={config_file_name(config)}'),
      shlex.quote(f'--workdir={workdir}'),
      f'--config.task={task}',
      shlex.quote(f'--config.checkpoint={checkpoint_path(config, workdir)}'),
  ]
  words += [shlex.quote(f'--config.{field}={value}') for field, value in settings.items()]
  return ' '.join(words)


def finish(workdir: str, name: str, result: dict, text: str) -> None:
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, RESULTS_DIR, f'{name}.json'), result)
    print(text, flush=True)
