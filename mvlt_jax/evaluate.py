"""The paper's evaluation tasks: retrieval (TIR / ITR), recognition, masked image generation.

  python main.py --config=configs/pretrain.py --workdir=DIR --config.task=eval_retrieval \\
      [--config.checkpoint=PATH]
  ... --config.task=eval_recognition   (a fine-tuned checkpoint with the recognition heads)
  ... --config.task=reconstruct        (PSNR / SSIM of masked image generation + a picture)

The model comes from the checkpoint (its ``config.json``: a training checkpoint
``WORKDIR/checkpoints``, one of its ``<step>`` folders, or a converted release checkpoint);
the dataset and the evaluation settings (``config.eval``) from the given config. Only the
heads a task needs are built (retrieval runs without the MLM and MIR decoders, half of the
pre-training model's forward FLOPs). Every task writes ``DIR/results/<name>.json`` and
prints a markdown table; with Fashion-Gen the table puts the paper's numbers beside ours.

Protocols and decisions
-----------------------
* **Retrieval** (zero-shot): for each query the ITM cross-encoder scores its
  ``num_candidates`` (101) pairs in one jit'd call (``queries_per_step`` queries per call;
  shapes are static, the function compiles once). Candidates are those of
  ``input_pipeline.retrieval_sets`` (the true partner + 100 products of the same
  sub-category), drawn from ``eval.seed`` and stored so that runs can be repeated;
  ``eval.resamples`` draws new sets from seeds ``seed, seed + 1, ...`` and reports mean and
  sample std. TIR (text -> image) ranks a query caption's candidate images, ITR
  (image -> text) a query image's candidate captions (``directions`` in the JSON). A
  pair's score is the ITM log-odds ``logits[1] - logits[0]``: ``softmax(logits)[1] =
  sigmoid(logits[1] - logits[0])`` orders pairs identically, but the log-odds does not
  saturate to 1.0 in float32, which would create false ties. Ties rank
  pessimistically (the partner after every candidate scoring at least as high); the
  results also count the queries whose rank a tie decides.
* **Full-gallery retrieval** (``eval.full_gallery``, as FashionViL / FAME-ViL report):
  each query against one view of every product of the split (the view rule of the
  retrieval sets). ``first_stage='none'`` scores every pair with the cross-encoder (exact,
  N pairs per query); ``'pooled_features'`` first ranks the gallery by the cosine
  similarity of unimodal features -- stage-4 visual tokens averaged, of the image with an
  empty caption, and stage-4 text tokens averaged over non-padding positions, of the
  caption with a white image -- and lets the cross-encoder re-rank the top
  ``first_stage_top_k``. A partner outside the top K ranks ``inf`` (a miss at every K).
  The cost (pairs scored, unimodal passes, seconds per stage) is reported.
* **Recognition**: accuracy and macro-F1 (``metrics.classification_report``) of the main
  and sub-category heads, each item with its own caption, plus a per-class table.
* **Masked image generation**: each image is masked as the checkpoint was pre-trained (the
  ``masking`` section of its ``config.json``; the given config's when it has none), with a
  key derived from ``(eval.mask_seed, record index in the split)``, so an item gets the
  same mask whatever the batch, the batch size or the host; the model sees the masked image
  and the item's own (unmasked) caption. Metrics on the reconstruction clipped to [0, 1]: PSNR over
  the image and over the masked units only, SSIM, and the same for the masked input itself
  (the "no model" baseline). PSNR is also given on the release's scale
  (``psnr_release_scale`` = ``psnr`` + 20 log10(255) = ``psnr`` + 48.13 dB: the release
  computes PSNR with a peak of 255 on images in [0, 1]); only that field compares with the
  release's figures. A picture (original | masked | reconstruction) of the first
  ``num_pictures`` records is written to ``results/reconstruction.png``.

Multi-host: every process scores its contiguous share of the queries (or its rows of the
evaluation batches) on its own devices; the per-item results are padded to a size all
processes share, gathered once with ``process_allgather`` and merged through a validity
mask, so no item is lost or counted twice when shares are uneven (:func:`process_slice`,
:func:`gather_results`). Process 0 writes the files.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mvlt_jax import checkpoint as checkpoint_lib
from mvlt_jax import distributed, masking, metrics
from mvlt_jax.errors import ConfigError, MVLTError
from mvlt_jax.models import build_model, compute_dtype, resolve_pyramid
from mvlt_jax.steps import images_to_float

RESULTS_DIR = 'results'
CHECKPOINTS_DIR = 'checkpoints'
DIRECTIONS = ('tir', 'itr')
DIRECTION_NAMES = {'tir': 'TIR (text -> image)', 'itr': 'ITR (image -> text)'}
# What each direction ranks; written to results/retrieval.json as ``directions``.
DIRECTION_INFO = {
    'tir': {'name': 'TIR', 'direction': 'text -> image', 'query': 'caption',
            'candidates': 'images'},
    'itr': {'name': 'ITR', 'direction': 'image -> text', 'query': 'image',
            'candidates': 'captions'},
}
FIRST_STAGES = ('pooled_features', 'none')

# The paper's results (Table 2 and the recognition table), for the dataset they were
# measured on.
PAPER_DATASET = 'fashion_gen'
PAPER_RETRIEVAL = {'tir': {'r1': 0.346, 'r5': 0.780, 'r10': 0.895},
                   'itr': {'r1': 0.331, 'r5': 0.772, 'r10': 0.911}}
PAPER_RECOGNITION = {'main': {'accuracy': 0.9826, 'macro_f1': 0.896},
                     'sub': {'accuracy': 0.9357, 'macro_f1': 0.829}}
# The white image that stands for "no image" in the unimodal text pass (values in [0, 1]).
BLANK_IMAGE_VALUE = 1.0


class EvaluationError(MVLTError):
  """An evaluation cannot run: wrong checkpoint for the task, data that does not fit it."""


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


def merge_process_results(stacked: dict[str, np.ndarray],
                          valid: np.ndarray) -> dict[str, np.ndarray]:
  """``{key: [P, capacity, ...]}`` with ``valid`` [P, capacity] -> ``{key: [n, ...]}``.

  Keeps the valid rows, in process order then row order.
  """
  mask = np.asarray(valid, bool).reshape(-1)
  return {key: np.asarray(value).reshape((-1,) + np.shape(value)[2:])[mask]
          for key, value in stacked.items()}


def _allgather(tree):
  if jax.process_count() == 1:
    return jax.tree.map(lambda x: np.asarray(x)[None], tree)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree))


def gather_results(local: dict[str, np.ndarray], valid: np.ndarray, capacity: int,
                   allgather: Optional[Callable[[Any], Any]] = None) -> dict[str, np.ndarray]:
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


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def _maybe_initialize_distributed(config) -> None:
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
  variables, step = checkpoint_lib.load_variables(path)
  path = os.path.abspath(path)
  config_dir = path
  if not os.path.exists(os.path.join(path, checkpoint_lib.CONFIG_FILE)):
    config_dir = os.path.dirname(path.rstrip('/'))  # PATH is a <step> folder
  run_config = checkpoint_lib.read_config(config_dir)
  model_config = run_config.model
  missing = [head for head in required_heads if head not in model_config.heads]
  if missing:
    raise EvaluationError(
        f'{path}: the checkpoint\'s model has the heads {tuple(model_config.heads)}; this task '
        f'needs {tuple(required_heads)} (missing {missing}). Retrieval and reconstruction '
        'need a pre-training checkpoint, recognition a fine-tuned one.')
  tokenizer = None
  tokenizer_dir = os.path.join(config_dir, checkpoint_lib.TOKENIZER_DIR)
  if os.path.isdir(tokenizer_dir):
    from input_pipeline.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
    tokenizer = load_tokenizer(tokenizer_dir)
  return LoadedCheckpoint(path, int(step), model_config, variables, tokenizer,
                          run_config.get('masking'))


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

  @property
  def description(self) -> str:
    return f'{self.name} split {self.split!r} in {self.data_dir}'


def open_eval_split(config, loaded: LoadedCheckpoint) -> EvalSplit:
  """Opens (preparing it first when missing and allowed) the split ``config`` evaluates on.

  Raises:
    EvaluationError: the split's text length or tokenizer differs from the checkpoint's.
  """
  from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel
  ds = config.dataset
  split = config.eval.split or ds.eval_split
  try:
    prepared = pipeline.open_split(ds.data_dir, ds.name, split)
  except pipeline.PreparedDatasetError:
    if not ds.auto_prepare:
      raise
    from mvlt_jax import train  # pylint: disable=import-outside-toplevel
    data_config = ml_collections.ConfigDict(config.to_dict())
    data_config.model = loaded.model_config
    train.load_dataset(data_config)
    prepared = pipeline.open_split(ds.data_dir, ds.name, split)
  where = f'{ds.name} split {split!r} in {ds.data_dir}'
  text_length = prepared.features[pipeline.INPUT_IDS_KEY].shape[0]
  if text_length != loaded.model_config.text_length:
    raise EvaluationError(
        f'{where} has captions of {text_length} tokens, the checkpoint {loaded.path} was '
        f'trained with text_length={loaded.model_config.text_length} (padding takes part in '
        'attention, so the lengths must agree): prepare the data with the checkpoint\'s length.')
  _check_tokenizer(loaded, prepared.dataset_dir, where)
  class_names = {
      'main': list(prepared.features[pipeline.CATEGORY_KEY].names),
      'sub': list(prepared.features[pipeline.SUBCATEGORY_KEY].names),
  }
  return EvalSplit(ds.data_dir, ds.name, split, int(loaded.model_config.image_size),
                   prepared.num_examples, class_names)


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
        f'the checkpoint {loaded.path} (fingerprint {loaded.tokenizer.fingerprint[:12]}...).')


def check_token_ids(input_ids: np.ndarray, vocab_size: int, where: str) -> None:
  """Token ids must index the model's vocabulary (JAX would turn others into NaN)."""
  if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
    raise EvaluationError(
        f'{where}: token ids reach {int(input_ids.max())} (min {int(input_ids.min())}) but the '
        f'model\'s vocabulary has {vocab_size} entries: the data was tokenized for another '
        'model.')


def _num_workers(config) -> Optional[int]:
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
    return {key: jax.device_put(pad_rows(value, rows), self.row_sharding)
            for key, value in arrays.items()}


# ----------------------------------------------------------------------------- retrieval


def make_itm_scorer(model) -> Callable:
  """``score(variables, images uint8 [R, S, S, 3], input_ids [R, L]) -> log-odds [R]``."""

  def score(variables, images, input_ids):
    logits = model.apply(variables, images_to_float(images), input_ids, train=False)['itm_logits']
    return logits[:, 1] - logits[:, 0]  # [R]; sigmoid of it is softmax(logits)[:, 1]

  return jax.jit(score)


def _grouped(iterator: Iterator[Any], size: int) -> Iterator[list[Any]]:
  group = []
  for item in iterator:
    group.append(item)
    if len(group) == size:
      yield group
      group = []
  if group:
    yield group


def score_candidate_sets(sets, view, direction: str, runner: LocalRunner, scorer: Callable, *,
                         queries_per_step: int, rows: int, vocab_size: int,
                         prefetch: int) -> np.ndarray:
  """The log-odds of every candidate pair of ``sets.queries``: float32 [Q, C].

  ``queries_per_step`` queries (Q x C pairs, zero-padded to ``rows``) go through one call
  of ``scorer``; the next call is dispatched before the previous one's results are read.
  """
  from input_pipeline import retrieval_sets as rs  # pylint: disable=import-outside-toplevel
  num_queries = len(sets.queries)
  num_candidates = sets.params['num_candidates']
  scores = np.zeros((num_queries, num_candidates), np.float32)
  batches = rs.candidate_batches(sets, view, direction, prefetch=prefetch)
  pending = None
  for group in _grouped(batches, queries_per_step):
    images = np.concatenate([b['images'] for b in group])  # [q * C, S, S, 3]
    input_ids = np.concatenate([b['input_ids'] for b in group])  # [q * C, L]
    check_token_ids(input_ids, vocab_size, f'retrieval query {group[0]["query_index"]}')
    inputs = runner.put_rows({'images': images, 'input_ids': input_ids}, rows)
    margins = scorer(runner.variables, inputs['images'], inputs['input_ids'])
    if pending is not None:
      _store_scores(scores, *pending, num_candidates)
    pending = (margins, [b['query_index'] for b in group])
  if pending is not None:
    _store_scores(scores, *pending, num_candidates)
  return scores


def _store_scores(scores, margins, query_indices, num_candidates):
  margins = np.asarray(margins)[:len(query_indices) * num_candidates]
  scores[query_indices] = margins.reshape(len(query_indices), num_candidates)


def _retrieval_sets_path(config, data: EvalSplit, seed: int) -> str:
  ev = config.eval
  directory = ev.retrieval_sets_dir or os.path.join(data.data_dir, data.name, 'retrieval_sets')
  return os.path.join(directory, f'{data.split}_q{ev.num_queries}_c{ev.num_candidates}'
                                 f'_seed{seed}.json')


def load_retrieval_sets(config, data: EvalSplit, records, seed: int):
  """The candidate sets of ``seed``: built and written by process 0 once, then reused."""
  from input_pipeline import retrieval_sets as rs  # pylint: disable=import-outside-toplevel
  path = _retrieval_sets_path(config, data, seed)
  build = functools.partial(rs.load_or_build, path, records, num_queries=config.eval.num_queries,
                            num_candidates=config.eval.num_candidates, seed=seed,
                            dataset=data.name, split=data.split)
  sets = build() if jax.process_index() == 0 else None
  _sync(f'retrieval sets {seed}')
  if sets is None:  # the other processes read the file process 0 wrote
    sets = build()
  return sets, path


def _rank_fields(scores: np.ndarray, partner: np.ndarray) -> dict[str, np.ndarray]:
  return {'rank': metrics.partner_ranks(scores, partner, ties='pessimistic'),
          'optimistic_rank': metrics.partner_ranks(scores, partner, ties='optimistic')}


def _direction_summary(ranks: np.ndarray, optimistic: np.ndarray,
                       ks: Sequence[int]) -> dict[str, Any]:
  return {**metrics.recalls_by_name(metrics.recall_at_k(ranks, ks)),
          'tied_queries': int(np.sum(ranks != optimistic)),
          'mean_rank': float(np.mean(ranks))}


def retrieval_protocol(config, loaded: LoadedCheckpoint, data: EvalSplit, runner: LocalRunner,
                       scorer: Callable, view, metadata) -> dict[str, Any]:
  """The paper's protocol (``resamples`` candidate draws), gathered over processes."""
  from input_pipeline import retrieval_sets as rs  # pylint: disable=import-outside-toplevel
  ev = config.eval
  records = rs.records_from_metadata(metadata)
  process_index, process_count = jax.process_index(), jax.process_count()
  rows = runner.padded(ev.queries_per_step * ev.num_candidates)
  per_resample, seconds, pairs = [], 0.0, 0
  for resample in range(ev.resamples):
    seed = ev.seed + resample
    sets, path = load_retrieval_sets(config, data, records, seed)
    share = process_slice(len(sets.queries), process_index, process_count)
    local_sets = dataclasses.replace(sets, queries=sets.queries[share])
    partner = np.array([q.partner_position for q in local_sets.queries], np.int64)
    local = {'query_index': np.arange(share.start, share.stop)}
    start = time.perf_counter()
    for direction in DIRECTIONS:
      scores = score_candidate_sets(
          local_sets, view, direction, runner, scorer, queries_per_step=ev.queries_per_step,
          rows=rows, vocab_size=loaded.model_config.vocab_size,
          prefetch=ev.prefetch * ev.queries_per_step)
      for key, value in _rank_fields(scores, partner).items():
        local[f'{direction}_{key}'] = value
    seconds += time.perf_counter() - start
    pairs += 2 * len(sets.queries) * ev.num_candidates
    gathered = gather_results(local, np.ones(len(partner), bool),
                              process_capacity(len(sets.queries), process_count))
    order = np.argsort(gathered['query_index'])
    entry = {'seed': seed, 'sets_file': path}
    for direction in DIRECTIONS:
      ranks = gathered[f'{direction}_rank'][order].astype(np.int64)
      optimistic = gathered[f'{direction}_optimistic_rank'][order].astype(np.int64)
      entry[direction] = _direction_summary(ranks, optimistic, ev.recall_ks)
      entry[f'{direction}_ranks'] = ranks.tolist()
    per_resample.append(entry)
    logging.info('retrieval seed %d: %s', seed, {d: entry[d] for d in DIRECTIONS})

  result = {'queries': ev.num_queries, 'candidates': ev.num_candidates,
            'resamples': ev.resamples, 'seeds': [e['seed'] for e in per_resample],
            'ties': 'pessimistic', 'score': 'ITM log-odds logits[1] - logits[0]',
            'directions': {d: dict(DIRECTION_INFO[d]) for d in DIRECTIONS}}
  for direction in DIRECTIONS:
    result[direction], result[f'{direction}_std'] = {}, {}
    for k in ev.recall_ks:
      mean, std = metrics.mean_and_std([e[direction][f'r{k}'] for e in per_resample])
      result[direction][f'r{k}'], result[f'{direction}_std'][f'r{k}'] = mean, std
  result.update(pairs_scored=pairs, seconds=seconds, pairs_per_second=pairs / max(seconds, 1e-9),
                per_resample=per_resample)
  return result


# ----------------------------------------------------------------------------- full gallery


def gallery_of(metadata) -> tuple[np.ndarray, np.ndarray]:
  """One record per product (smallest pose, then smallest id, as the retrieval sets pick),
  sorted by product id: (record ids [N], product ids [N])."""
  chosen: dict[str, tuple] = {}
  poses = metadata.poses if metadata.poses is not None else [None] * len(metadata.ids)
  for record_id, product_id, pose in zip(metadata.ids, metadata.product_ids, poses):
    key = (pose is not None, pose, record_id)
    if product_id not in chosen or key < chosen[product_id]:
      chosen[product_id] = key
  products = sorted(chosen)
  return (np.array([chosen[p][2] for p in products], dtype=object),
          np.array(products, dtype=object))


def make_pooled_features(model) -> Callable:
  """``features(variables, images uint8, input_ids, text_valid) -> (visual [R, D], text [R, D])``.

  Visual: stage-4 visual tokens averaged; text: stage-4 text tokens averaged over the
  positions where ``text_valid``; both L2-normalised.
  """

  def features(variables, images, input_ids, text_valid):
    out = model.apply(variables, images_to_float(images), input_ids, train=False,
                      return_features=True)
    visual = out['stage_maps'][-1].astype(jnp.float32).mean(axis=(1, 2))  # [R, D4]
    weights = text_valid.astype(jnp.float32)[..., None]  # [R, L, 1]
    text = (out['text_tokens'].astype(jnp.float32) * weights).sum(1) / jnp.maximum(
        weights.sum(1), 1.0)  # [R, D4]
    normalise = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return normalise(visual), normalise(text)

  return jax.jit(features)


def _blank_caption(loaded: LoadedCheckpoint, data: EvalSplit):
  """(ids of an empty caption [L], the tokenizer's pad id)."""
  tokenizer = loaded.tokenizer
  if tokenizer is None:
    from input_pipeline import prepare  # pylint: disable=import-outside-toplevel
    from input_pipeline.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
    directory = prepare.tokenizer_dir(data.data_dir, data.name)
    if not os.path.isdir(directory):
      raise EvaluationError(
          f'first_stage=pooled_features needs a tokenizer (for the empty caption of the image '
          f'pass): neither {loaded.path} nor {directory} has one.')
    tokenizer = load_tokenizer(directory)
  return tokenizer.encode('', loaded.model_config.text_length), tokenizer.pad_id


def _chunks(num_items: int, size: int) -> list[slice]:
  return [slice(start, min(start + size, num_items)) for start in range(0, num_items, size)]


def gallery_features(config, loaded, data, runner, view, record_ids: np.ndarray,
                     rows: int) -> tuple[np.ndarray, np.ndarray]:
  """Unimodal features of every gallery item, computed in shares and gathered:
  (image features [N, D], caption features [N, D])."""
  features_fn = make_pooled_features(loaded.model((), config.eval.dtype))
  blank_ids, pad_id = _blank_caption(loaded, data)
  size = data.image_size
  share = process_slice(len(record_ids), jax.process_index(), jax.process_count())
  local_ids = record_ids[share]

  image_parts, text_parts = [], []
  for loaded_chunk in view.pairs(list(local_ids), list(local_ids), rows):
    count = len(loaded_chunk['images'])
    check_token_ids(loaded_chunk['input_ids'], loaded.model_config.vocab_size,
                    data.description)
    image_pass = runner.put_rows({
        'images': loaded_chunk['images'], 'input_ids': np.tile(blank_ids, (count, 1)),
        'text_valid': np.tile(blank_ids != pad_id, (count, 1))}, rows)
    blank = np.full((count, size, size, 3), round(255 * BLANK_IMAGE_VALUE), np.uint8)
    text_pass = runner.put_rows({
        'images': blank, 'input_ids': loaded_chunk['input_ids'],
        'text_valid': loaded_chunk['input_ids'] != pad_id}, rows)
    visual, _ = features_fn(runner.variables, *image_pass.values())
    _, text = features_fn(runner.variables, *text_pass.values())
    image_parts.append(np.asarray(visual)[:count])
    text_parts.append(np.asarray(text)[:count])
  width = resolve_pyramid(loaded.model_config).embed_dims[-1]
  concat = lambda parts: (np.concatenate(parts) if parts
                          else np.zeros((0, width), np.float32))  # a process with no items
  local = {'image': concat(image_parts), 'text': concat(text_parts)}
  gathered = gather_results(local, np.ones(len(local_ids), bool),
                            process_capacity(len(record_ids), jax.process_count()))
  return gathered['image'], gathered['text']


def score_pairs(view, runner, scorer, direction: str, query_ids: np.ndarray,
                candidate_ids: np.ndarray, *, rows: int, vocab_size: int) -> np.ndarray:
  """Cross-encoder log-odds of (query i, candidate_ids[i, j]) pairs: [Q, K].

  TIR pairs the query's caption with the candidate's image; ITR the query's image with the
  candidate's caption. Pairs go through ``scorer`` ``rows`` at a time.
  """
  num_queries, width = candidate_ids.shape
  flat_query = np.repeat(query_ids, width)
  flat_candidate = candidate_ids.reshape(-1)
  if direction == 'tir':
    image_ids, text_ids = flat_candidate, flat_query
  else:
    image_ids, text_ids = flat_query, flat_candidate

  scores = np.zeros(num_queries * width, np.float32)
  pending = None
  for chunk, inputs in zip(_chunks(len(flat_query), rows),
                           view.pairs(list(image_ids), list(text_ids), rows)):
    check_token_ids(inputs['input_ids'], vocab_size, 'full-gallery retrieval')
    device_inputs = runner.put_rows(inputs, rows)
    margins = scorer(runner.variables, device_inputs['images'], device_inputs['input_ids'])
    if pending is not None:
      scores[pending[0]] = np.asarray(pending[1])[:pending[0].stop - pending[0].start]
    pending = (chunk, margins)
  if pending is not None:
    scores[pending[0]] = np.asarray(pending[1])[:pending[0].stop - pending[0].start]
  return scores.reshape(num_queries, width)


def ranks_among_candidates(scores: np.ndarray, candidates: np.ndarray,
                           partner: np.ndarray) -> dict[str, np.ndarray]:
  """Pessimistic / optimistic rank of each query's partner among its scored candidates;
  ``inf`` where the partner is not a candidate (first stage missed it)."""
  hit = candidates == partner[:, None]  # [Q, K]
  found = hit.any(axis=1)
  ranks = {'rank': np.full(len(partner), np.inf), 'optimistic_rank': np.full(len(partner), np.inf)}
  if found.any():
    column = hit[found].argmax(axis=1)
    for key, value in _rank_fields(scores[found], column).items():
      ranks[key][found] = value
  return ranks


def full_gallery_retrieval(config, loaded, data, runner, scorer, view,
                           metadata) -> dict[str, Any]:
  """Every query against the whole gallery, exhaustive or two-stage (module docstring)."""
  ev = config.eval
  if ev.first_stage not in FIRST_STAGES:
    raise EvaluationError(f'eval.first_stage must be one of {FIRST_STAGES}, '
                          f'got {ev.first_stage!r}.')
  record_ids, _ = gallery_of(metadata)
  gallery_size = len(record_ids)
  num_queries = min(ev.full_gallery_queries or gallery_size, gallery_size)
  queries = np.sort(np.random.default_rng(ev.seed).choice(gallery_size, num_queries,
                                                          replace=False))
  share = process_slice(num_queries, jax.process_index(), jax.process_count())
  local_queries = queries[share]
  rows = runner.padded(ev.queries_per_step * ev.num_candidates)
  start = time.perf_counter()
  if ev.first_stage == 'pooled_features':
    image_features, text_features = gallery_features(config, loaded, data, runner, view,
                                                     record_ids, rows)
    top_k = min(ev.first_stage_top_k, gallery_size)
  else:
    top_k = gallery_size
  first_stage_seconds = time.perf_counter() - start

  local = {'query': local_queries}
  cross_seconds = 0.0
  for direction in DIRECTIONS:
    start = time.perf_counter()
    if ev.first_stage == 'pooled_features':
      query_features = text_features if direction == 'tir' else image_features
      gallery = image_features if direction == 'tir' else text_features
      similarity = query_features[local_queries] @ gallery.T  # [q, N]
      candidates = np.argsort(-similarity, axis=1, kind='stable')[:, :top_k]  # [q, K]
    else:
      candidates = np.tile(np.arange(gallery_size), (len(local_queries), 1))  # [q, N]
    first_stage_seconds += time.perf_counter() - start
    start = time.perf_counter()
    scores = score_pairs(view, runner, scorer, direction, record_ids[local_queries],
                         record_ids[candidates], rows=rows,
                         vocab_size=loaded.model_config.vocab_size)
    cross_seconds += time.perf_counter() - start
    for key, value in ranks_among_candidates(scores, candidates, local_queries).items():
      local[f'{direction}_{key}'] = value
    local[f'{direction}_first_stage_hit'] = (candidates == local_queries[:, None]).any(axis=1)
  gathered = gather_results(local, np.ones(len(local_queries), bool),
                            process_capacity(num_queries, jax.process_count()))
  order = np.argsort(gathered['query'])
  result = {'gallery': gallery_size, 'queries': num_queries, 'first_stage': ev.first_stage,
            'top_k': top_k, 'query_record_ids': record_ids[gathered['query'][order]].tolist()}
  for direction in DIRECTIONS:
    ranks = gathered[f'{direction}_rank'][order].astype(np.float64)
    optimistic = gathered[f'{direction}_optimistic_rank'][order].astype(np.float64)
    summary = metrics.recalls_by_name(metrics.recall_at_k(ranks, ev.recall_ks))
    summary['tied_queries'] = int(np.sum(ranks != optimistic))
    summary['first_stage_recall'] = float(np.mean(gathered[f'{direction}_first_stage_hit']))
    result[direction] = summary
    result[f'{direction}_ranks'] = ranks.tolist()  # inf (null in JSON): missed by stage 1
  result['cost'] = {
      'cross_encoder_pairs': 2 * num_queries * top_k,
      'unimodal_passes': 2 * gallery_size if ev.first_stage == 'pooled_features' else 0,
      'exhaustive_pairs': 2 * num_queries * gallery_size,
      'first_stage_seconds': first_stage_seconds,
      'cross_encoder_seconds': cross_seconds,
  }
  return result


def run_retrieval(config, loaded: LoadedCheckpoint, data: EvalSplit) -> dict[str, Any]:
  """The paper's protocol, and the full-gallery one when ``eval.full_gallery``."""
  from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel
  ev = config.eval
  if ev.queries_per_step < 1 or ev.resamples < 1:
    raise EvaluationError('eval.queries_per_step and eval.resamples must be >= 1.')
  metadata = pipeline.read_metadata(data.data_dir, data.name, data.split)
  view = pipeline.SplitView(data.data_dir, data.name, data.split, image_size=data.image_size,
                            metadata=metadata, prefetch=ev.prefetch,
                            num_workers=_num_workers(config))
  try:
    runner = LocalRunner(loaded.variables)
    scorer = make_itm_scorer(loaded.model(('itm',), ev.dtype))
    result = retrieval_protocol(config, loaded, data, runner, scorer, view, metadata)
    if ev.full_gallery:
      result['full_gallery'] = full_gallery_retrieval(config, loaded, data, runner, scorer,
                                                      view, metadata)
  finally:
    view.close()
  return result


# ----------------------------------------------------------------------------- split passes


def run_over_split(config, data: EvalSplit, runner: LocalRunner, step: Callable, *,
                   input_keys: Sequence[str], host_keys: Sequence[str] = (),
                   output_keys: Sequence[str], picture_keys: Sequence[str] = (),
                   num_pictures: int = 0, vocab_size: int) -> tuple[dict, dict]:
  """Runs ``step(variables, *inputs, record_index)`` over this process's rows of the split.

  Rows are the evaluation batches of ``pipeline.eval_iterator`` (global batch
  ``eval.batch_size``; the first ``eval.max_examples`` records when > 0). Returns the
  per-record outputs (``output_keys`` of the step, ``host_keys`` of the batch, and
  ``record_index``) of every process, sorted by record index, and the ``picture_keys``
  outputs of the first ``num_pictures`` records.
  """
  from input_pipeline import pipeline  # pylint: disable=import-outside-toplevel
  ev = config.eval
  process_index, process_count = jax.process_index(), jax.process_count()
  local_batch = pipeline.local_batch_size(ev.batch_size, process_count)
  limit = min(data.num_examples, ev.max_examples) if ev.max_examples > 0 else data.num_examples
  num_steps = -(-limit // ev.batch_size)
  if num_steps == 0:
    return {}, {}
  rows = runner.padded(local_batch)
  batches = pipeline.eval_iterator(data.data_dir, data.name, data.split, ev.batch_size,
                                   image_size=data.image_size, prefetch=ev.prefetch,
                                   num_workers=_num_workers(config))
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
      record_index = (step_index * ev.batch_size + process_index * local_batch
                      + np.arange(local_batch))
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
    picture_rows = _sorted_by_record(gather_results(local_pictures, np.ones(count, bool),
                                                    num_pictures))
  return gathered, picture_rows


def _sorted_by_record(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  order = np.argsort(rows['record_index'], kind='stable')
  return {key: value[order] for key, value in rows.items()}


# ----------------------------------------------------------------------------- recognition


def make_recognition_step(model) -> Callable:
  """``(variables, images uint8, input_ids, record_index) -> {main, sub}`` predictions."""

  def step(variables, images, input_ids, record_index):
    del record_index
    out = model.apply(variables, images_to_float(images), input_ids, train=False)
    return {'main_prediction': jnp.argmax(out['main_logits'], axis=-1),
            'sub_prediction': jnp.argmax(out['sub_logits'], axis=-1)}

  return jax.jit(step)


def run_recognition(config, loaded: LoadedCheckpoint, data: EvalSplit) -> dict[str, Any]:
  """Accuracy, macro-F1 and per-class scores of both recognition heads."""
  model_config = loaded.model_config
  for level, field in (('main', 'num_main_classes'), ('sub', 'num_sub_classes')):
    if len(data.class_names[level]) != model_config[field]:
      raise EvaluationError(
          f'{data.description} has {len(data.class_names[level])} {level} categories, the '
          f'checkpoint {loaded.path} predicts {model_config[field]}.')
  runner = LocalRunner(loaded.variables)
  step = make_recognition_step(loaded.model(('recognition',), config.eval.dtype))
  start = time.perf_counter()
  rows, _ = run_over_split(config, data, runner, step, input_keys=('images', 'input_ids'),
                           host_keys=('main_labels', 'sub_labels'),
                           output_keys=('main_prediction', 'sub_prediction'),
                           vocab_size=model_config.vocab_size)
  seconds = time.perf_counter() - start
  if not rows or len(rows['record_index']) == 0:
    raise EvaluationError(f'{data.description} has no records to evaluate.')
  result = {'examples': int(len(rows['record_index'])), 'seconds': seconds}
  for level in ('main', 'sub'):
    names = data.class_names[level]
    report = metrics.classification_report(rows[f'{level}_labels'],
                                           rows[f'{level}_prediction'], len(names))
    result[level] = {'accuracy': report.accuracy, 'macro_f1': report.macro_f1,
                     'classes': len(names), 'classes_present': int(report.present.sum()),
                     'per_class': report.per_class(names)}
  return result


# ----------------------------------------------------------------------------- reconstruction


def mask_items(images: jax.Array, record_index: jax.Array, *, seed: int,
               masking_config) -> tuple[jax.Array, jax.Array]:
  """Masks each image as pre-training does, with a key of ``(seed, its record index)`` only.

  An item therefore gets the same mask whatever batch, batch position or host it is in.
  images float [B, H, W, 3], record_index int [B] -> (masked [B, H, W, 3], cells
  [B, H/unit, W/unit] bool).
  """
  base = jax.random.key(seed)

  def mask_one(index, image):
    masked, cells = masking.mask_image_grid(
        jax.random.fold_in(base, index), image[None], unit=masking_config.image_unit,
        ratio=masking_config.image_ratio, fill=masking_config.image_fill,
        distribution=masking_config.get('image_distribution', 'exact'))
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
            metrics.masked_mse(masked, images, pixel_mask, xp=jnp), xp=jnp),
        'input_ssim': metrics.ssim(masked, images, xp=jnp),
        'original': to_uint8(images), 'masked': to_uint8(masked),
        'reconstruction': to_uint8(reconstruction),
    }

  return jax.jit(step)


RELEASE_SCALE_NOTE = (
    "psnr_release_scale = psnr + 20 log10(255) = psnr + 48.13 dB: the release's PSNR (peak "
    "255 on images in [0, 1]); only it compares with the release's figures.")
_IMAGE_METRICS = ('psnr', 'psnr_masked_region', 'ssim', 'input_psnr',
                  'input_psnr_masked_region', 'input_ssim', 'mse')
_PICTURE_KEYS = ('original', 'masked', 'reconstruction')


def picture_grid(columns: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
  """Rows of items, one column per array of ``columns`` (uint8 [N, H, W, 3] each), with
  white gaps of ``gap`` pixels: uint8 [N*(H+gap)-gap, C*(W+gap)-gap, 3]."""
  count, height, width, _ = columns[0].shape
  grid = np.full((count * (height + gap) - gap, len(columns) * (width + gap) - gap, 3), 255,
                 np.uint8)
  for c, images in enumerate(columns):
    for r in range(count):
      top, left = r * (height + gap), c * (width + gap)
      grid[top:top + height, left:left + width] = images[r]
  return grid


def run_reconstruction(config, loaded: LoadedCheckpoint, data: EvalSplit,
                       picture_path: Optional[str]) -> dict[str, Any]:
  """PSNR / SSIM with fixed seeded masks, and the picture of the first records."""
  ev = config.eval
  masking_config = loaded.masking_config or config.masking
  unit = masking_config.image_unit
  if data.image_size % unit:
    raise EvaluationError(f'image size {data.image_size} is not a multiple of '
                          f'masking.image_unit={unit}.')
  runner = LocalRunner(loaded.variables)
  step = make_reconstruction_step(loaded.model(('mir',), ev.dtype), masking_config,
                                  ev.mask_seed)
  start = time.perf_counter()
  rows, pictures = run_over_split(
      config, data, runner, step, input_keys=('images', 'input_ids'),
      output_keys=_IMAGE_METRICS, picture_keys=_PICTURE_KEYS, num_pictures=ev.num_pictures,
      vocab_size=loaded.model_config.vocab_size)
  seconds = time.perf_counter() - start
  if not rows or len(rows['record_index']) == 0:
    raise EvaluationError(f'{data.description} has no records to evaluate.')
  psnr = metrics.summarize_psnr(rows['psnr'])
  input_psnr = metrics.summarize_psnr(rows['input_psnr'])['mean']
  result = {
      'examples': int(len(rows['record_index'])), 'seconds': seconds,
      'mask': {'unit': unit, 'ratio': masking_config.image_ratio,
               'distribution': masking_config.get('image_distribution', 'exact'),
               'fill': masking_config.image_fill, 'seed': ev.mask_seed,
               'keyed_by': 'record index in the split'},
      'psnr': psnr['mean'],
      'psnr_release_scale': metrics.psnr_release_scale(psnr['mean']),
      'psnr_release_scale_note': RELEASE_SCALE_NOTE,
      'identical_images': psnr['infinite'],
      'psnr_of_mean_mse': metrics.as_json_number(
          metrics.psnr_from_mse(np.mean(rows['mse'], dtype=np.float64))),
      'psnr_masked_region': metrics.summarize_psnr(rows['psnr_masked_region'])['mean'],
      'ssim': float(np.mean(rows['ssim'], dtype=np.float64)),
      'masked_input': {
          'psnr': input_psnr,
          'psnr_release_scale': metrics.psnr_release_scale(input_psnr),
          'psnr_masked_region': metrics.summarize_psnr(rows['input_psnr_masked_region'])['mean'],
          'ssim': float(np.mean(rows['input_ssim'], dtype=np.float64))},
  }
  if picture_path and pictures and len(pictures['record_index']):
    if jax.process_index() == 0:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      os.makedirs(os.path.dirname(picture_path), exist_ok=True)
      Image.fromarray(picture_grid([pictures[key] for key in _PICTURE_KEYS])).save(picture_path)
    result['picture'] = {'path': picture_path, 'records': pictures['record_index'].tolist(),
                         'columns': list(_PICTURE_KEYS)}
  return result


# ----------------------------------------------------------------------------- output


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ['| ' + ' | '.join(map(str, header)) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows]
  return '\n'.join(lines)


def _percent(value: Optional[float], std: Optional[float] = None) -> str:
  if value is None:
    return '-'
  text = f'{100 * value:.1f}'
  return text + (f' ± {100 * std:.1f}' if std else '')


DIRECTIONS_NOTE = ('TIR (text -> image): the query is a caption, ranked against candidate '
                   'images; ITR (image -> text): the query is an image, ranked against '
                   'candidate captions.')


def format_retrieval(result: dict, with_paper: bool) -> str:
  ks = [key for key in result['tir'] if key.startswith('r')]
  header = ['direction'] + [f'R@{k[1:]}' for k in ks]
  if with_paper:
    header += [f'paper R@{k[1:]}' for k in ks]
  rows = []
  for direction in DIRECTIONS:
    row = [DIRECTION_NAMES[direction]]
    row += [_percent(result[direction][k], result[f'{direction}_std'][k]) for k in ks]
    if with_paper:
      row += [_percent(PAPER_RETRIEVAL[direction].get(k)) for k in ks]
    rows.append(row)
  title = (f'Retrieval (zero-shot, ITM cross-encoder): {result["queries"]} queries x '
           f'{result["candidates"]} candidates, {result["resamples"]} candidate draw(s) '
           f'(seeds {result["seeds"]}), checkpoint step {result.get("step", "?")}, '
           f'{result["pairs_scored"]:,} pairs in {result["seconds"]:.1f} s')
  text = title + '\n\n' + markdown_table(header, rows) + '\n\n' + DIRECTIONS_NOTE
  if 'full_gallery' in result:
    gallery = result['full_gallery']
    gks = [key for key in gallery['tir'] if key.startswith('r') and key[1:].isdigit()]
    header = (['direction'] + [f'R@{k[1:]}' for k in gks]
              + [f'first stage recall@{gallery["top_k"]}'])
    rows = [[DIRECTION_NAMES[d]] + [_percent(gallery[d][k]) for k in gks]
            + [_percent(gallery[d]['first_stage_recall'])] for d in DIRECTIONS]
    cost = gallery['cost']
    text += (f'\n\nFull gallery: {gallery["queries"]} queries x {gallery["gallery"]} products, '
             f'first stage {gallery["first_stage"]} (top {gallery["top_k"]}); cross-encoder '
             f'{cost["cross_encoder_pairs"]:,} pairs ({cost["cross_encoder_seconds"]:.1f} s; '
             f'exhaustive would be {cost["exhaustive_pairs"]:,}), first stage '
             f'{cost["unimodal_passes"]:,} unimodal passes ({cost["first_stage_seconds"]:.1f} s)'
             '\n\n' + markdown_table(header, rows))
  return text


def format_recognition(result: dict, with_paper: bool) -> str:
  header = ['task', 'accuracy', 'macro-F1']
  if with_paper:
    header += ['paper accuracy', 'paper macro-F1']
  rows = []
  for level, name in (('main', 'M-CR'), ('sub', 'S-CR')):
    scores = result[level]
    row = [f'{name} ({scores["classes"]} classes, {scores["classes_present"]} present)',
           _percent(scores['accuracy']) + '%', f'{scores["macro_f1"]:.3f}']
    if with_paper:
      row += [_percent(PAPER_RECOGNITION[level]['accuracy']) + '%',
              f'{PAPER_RECOGNITION[level]["macro_f1"]:.3f}']
    rows.append(row)
  return (f'Recognition: {result["examples"]} examples, checkpoint step '
          f'{result.get("step", "?")}\n\n' + markdown_table(header, rows))


def format_per_class(result: dict) -> str:
  parts = []
  for level, name in (('main', 'Main categories'), ('sub', 'Sub-categories')):
    rows = [[c['name'], c['support'], c['predicted'], f'{c["precision"]:.3f}',
             f'{c["recall"]:.3f}', f'{c["f1"]:.3f}'] for c in result[level]['per_class']]
    parts.append(f'## {name}\n\n' + markdown_table(
        ['class', 'support', 'predicted', 'precision', 'recall', 'F1'], rows))
  return '\n\n'.join(parts) + '\n'


def format_reconstruction(result: dict) -> str:
  number = lambda value, digits: '-' if value is None else f'{value:.{digits}f}'
  mask = result['mask']
  rows = []
  for name, scores in (('reconstruction', result), ('masked input (no model)',
                                                    result['masked_input'])):
    rows.append([name, number(scores['psnr'], 2), number(scores['psnr_release_scale'], 2),
                 number(scores['psnr_masked_region'], 2), number(scores['ssim'], 4)])
  header = ['', 'PSNR (dB)', 'PSNR, release scale (dB)', 'PSNR masked units (dB)', 'SSIM']
  share = (f'{mask["ratio"]:.0%}' if mask.get('distribution', 'exact') == 'exact'
           else f'on average {mask["ratio"]:.0%} (the release\'s generator)')
  text = (f'Masked image generation: {result["examples"]} images, {share} of '
          f'{mask["unit"]}x{mask["unit"]} units masked (seed {mask["seed"]}), checkpoint step '
          f'{result.get("step", "?")}\n\n' + markdown_table(header, rows)
          + '\n\nPSNR, release scale = PSNR + 20 log10(255) = PSNR + 48.13 dB: the release '
          'computes PSNR with a peak of 255 on images in [0, 1]; only this column compares '
          "with the release's figures.")
  if 'picture' in result:
    text += f'\n\nPicture (original | masked | reconstruction): {result["picture"]["path"]}'
  return text


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


def _header(config, loaded: LoadedCheckpoint, data: EvalSplit, task: str) -> dict[str, Any]:
  return {'task': task, 'checkpoint': loaded.path, 'step': loaded.step, 'dataset': data.name,
          'split': data.split, 'data_dir': os.path.abspath(data.data_dir),
          'model': loaded.model_config.variant, 'dtype': config.eval.dtype or
          loaded.model_config.dtype}


def _finish(workdir: str, name: str, result: dict, text: str) -> None:
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, RESULTS_DIR, f'{name}.json'), result)
    print(text, flush=True)


# ----------------------------------------------------------------------------- tasks


def eval_retrieval(config, workdir: str) -> dict[str, Any]:
  """Task ``eval_retrieval``: writes ``results/retrieval.json`` and prints the table."""
  _maybe_initialize_distributed(config)
  loaded = load_checkpoint(checkpoint_path(config, workdir), ('itm',))
  data = open_eval_split(config, loaded)
  result = {**_header(config, loaded, data, 'eval_retrieval'),
            **run_retrieval(config, loaded, data)}
  _finish(workdir, 'retrieval', result, format_retrieval(result, data.name == PAPER_DATASET))
  return result


def eval_recognition(config, workdir: str) -> dict[str, Any]:
  """Task ``eval_recognition``: ``results/recognition.json`` (+ a per-class markdown file)."""
  _maybe_initialize_distributed(config)
  loaded = load_checkpoint(checkpoint_path(config, workdir), ('recognition',))
  data = open_eval_split(config, loaded)
  result = {**_header(config, loaded, data, 'eval_recognition'),
            **run_recognition(config, loaded, data)}
  _finish(workdir, 'recognition', result,
          format_recognition(result, data.name == PAPER_DATASET))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, RESULTS_DIR, 'recognition_per_class.md'), 'w') as f:
      f.write(format_per_class(result))
  return result


def reconstruct(config, workdir: str) -> dict[str, Any]:
  """Task ``reconstruct``: ``results/reconstruction.json`` and ``results/reconstruction.png``."""
  _maybe_initialize_distributed(config)
  loaded = load_checkpoint(checkpoint_path(config, workdir), ('mir',))
  data = open_eval_split(config, loaded)
  picture = os.path.join(workdir, RESULTS_DIR, 'reconstruction.png')
  result = {**_header(config, loaded, data, 'reconstruct'),
            **run_reconstruction(config, loaded, data, picture)}
  _finish(workdir, 'reconstruction', result, format_reconstruction(result))
  return result


def run_demo_evaluation(config, workdir: str) -> dict[str, Any]:
  """What the demo runs after training: the retrieval table and the reconstruction picture.

  Uses ``config.eval`` as it is (the demo config sets fewer queries / examples); the
  checkpoint is ``config.checkpoint`` or ``workdir/checkpoints``.
  """
  return {'retrieval': eval_retrieval(config, workdir),
          'reconstruction': reconstruct(config, workdir)}
