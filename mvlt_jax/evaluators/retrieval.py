"""Retrieval (TIR / ITR) with the ITM cross-encoder: the paper's protocol and the full gallery.

Task ``eval_retrieval``; the protocols are in docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mvlt_jax import data as data_lib
from mvlt_jax import metrics
from mvlt_jax.evaluators import common
from mvlt_jax.models import resolve_pyramid
from mvlt_jax.steps import images_to_float

DIRECTIONS = ('tir', 'itr')
DIRECTION_NAMES = {'tir': 'TIR (text -> image)', 'itr': 'ITR (image -> text)'}
# What each direction ranks; written to results/retrieval.json as ``directions``.
DIRECTION_INFO = {
    'tir': {
        'name': 'TIR',
        'direction': 'text -> image',
        'query': 'caption',
        'candidates': 'images',
    },
    'itr': {
        'name': 'ITR',
        'direction': 'image -> text',
        'query': 'image',
        'candidates': 'captions',
    },
}
FIRST_STAGES = ('pooled_features', 'none')
# The paper's results (Table 2), on common.PAPER_DATASET.
PAPER_RETRIEVAL = {
    'tir': {'r1': 0.346, 'r5': 0.780, 'r10': 0.895},
    'itr': {'r1': 0.331, 'r5': 0.772, 'r10': 0.911},
}
# The white image that stands for "no image" in the unimodal text pass (values in [0, 1]).
BLANK_IMAGE_VALUE = 1.0
# Where the candidates of a query whose sub-category is too small come from (the fill rule of
# input_pipeline.retrieval_sets, small_subcategories='fill'; docs/evaluation.md).
FILL_RULE = (
    'every other product of the sub-category, then products of the main category, then of '
    'the rest of the split (drawn from the seed)'
)
FILL_LEVEL_NAMES = {
    'subcategory': 'same sub-category',
    'category': 'same main category',
    'catalog': 'rest of the split',
}


# ----------------------------------------------------------------------------- the paper's protocol


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


def score_candidate_sets(
    sets,
    view,
    direction: str,
    runner: common.LocalRunner,
    scorer: Callable,
    *,
    queries_per_step: int,
    rows: int,
    vocab_size: int,
    prefetch: int,
) -> np.ndarray:
  """The log-odds of every candidate pair of ``sets.queries``: float32 [Q, C].

  ``queries_per_step`` queries (Q x C pairs, zero-padded to ``rows``) go through one call
  of ``scorer``; the next call is dispatched before the previous one's results are read.
  """
  num_queries = len(sets.queries)
  num_candidates = sets.params['num_candidates']
  scores = np.zeros((num_queries, num_candidates), np.float32)
  batches = data_lib.candidate_batches(sets, view, direction, prefetch=prefetch)
  pending = None
  for group in _grouped(batches, queries_per_step):
    images = np.concatenate([b['images'] for b in group])  # [q * C, S, S, 3]
    input_ids = np.concatenate([b['input_ids'] for b in group])  # [q * C, L]
    common.check_token_ids(input_ids, vocab_size, f'retrieval query {group[0]["query_index"]}')
    inputs = runner.put_rows({'images': images, 'input_ids': input_ids}, rows)
    margins = scorer(runner.variables, inputs['images'], inputs['input_ids'])
    if pending is not None:
      _store_scores(scores, *pending, num_candidates)
    pending = (margins, [b['query_index'] for b in group])
  if pending is not None:
    _store_scores(scores, *pending, num_candidates)
  return scores


def _store_scores(scores, margins, query_indices, num_candidates):
  margins = np.asarray(margins)[: len(query_indices) * num_candidates]
  scores[query_indices] = margins.reshape(len(query_indices), num_candidates)


def _retrieval_sets_path(config, data: common.EvalSplit, seed: int) -> str:
  """The file of the candidate sets, keyed by their parameters and the file format's version
  (a file built by an older rule, e.g. before the fill rule, is never picked up)."""
  ev = config.eval
  directory = ev.retrieval_sets_dir or os.path.join(data.data_dir, data.name, 'retrieval_sets')
  return os.path.join(
      directory,
      f'{data.split}_q{ev.num_queries}_c{ev.num_candidates}_seed{seed}'
      f'_v{data_lib.RETRIEVAL_SETS_FORMAT_VERSION}.json',
  )


def check_protocol_fits(config, data: common.EvalSplit, records) -> None:
  """The paper's protocol needs ``num_candidates`` and ``num_queries`` products in the split
  (small sub-categories are filled; only a split that small cannot be).

  Raises:
    DataTooSmallError: naming the settings to lower and the values that fit.
  """
  ev = config.eval
  products = len({r.product_id for r in records})
  problems, overrides = [], {}
  if products < ev.num_candidates:
    problems.append(
        f'each query is ranked among eval.num_candidates={ev.num_candidates} products (its '
        f'partner and {ev.num_candidates - 1} others): lower --config.eval.num_candidates '
        f'(at most {products})'
    )
    overrides['eval.num_candidates'] = products
  if products < ev.num_queries:
    problems.append(
        f'eval.num_queries={ev.num_queries} query products were asked for: lower '
        f'--config.eval.num_queries (at most {products})'
    )
    overrides['eval.num_queries'] = products
  if problems:
    raise common.DataTooSmallError(
        f'{data.description} has {products} products; ' + '; '.join(problems) + '.',
        overrides,
    )


def load_retrieval_sets(config, data: common.EvalSplit, records, seed: int):
  """The candidate sets of ``seed``: built and written by process 0 once, then reused.

  Sub-categories with fewer than ``num_candidates`` products are filled (``FILL_RULE``);
  where the data allows, the sets are the paper's protocol exactly.
  """
  path = _retrieval_sets_path(config, data, seed)
  build = functools.partial(
      data_lib.load_or_build_retrieval_sets,
      path,
      records,
      num_queries=config.eval.num_queries,
      num_candidates=config.eval.num_candidates,
      seed=seed,
      dataset=data.name,
      split=data.split,
      small_subcategories='fill',
  )
  sets = build() if jax.process_index() == 0 else None
  common.sync(f'retrieval sets {seed}')
  if sets is None:  # the other processes read the file process 0 wrote
    sets = build()
  return sets, path


def _rank_fields(scores: np.ndarray, partner: np.ndarray) -> dict[str, np.ndarray]:
  return {
      'rank': metrics.partner_ranks(scores, partner, ties='pessimistic'),
      'optimistic_rank': metrics.partner_ranks(scores, partner, ties='optimistic'),
  }


def _direction_summary(
    ranks: np.ndarray, optimistic: np.ndarray, ks: Sequence[int], num_candidates: int
) -> dict[str, Any]:
  return {
      **metrics.recalls_by_name(metrics.recall_at_k(ranks, ks, num_candidates)),
      'tied_queries': int(np.sum(ranks != optimistic)),
      'mean_rank': float(np.mean(ranks)),
  }


def retrieval_protocol(
    config,
    loaded: common.LoadedCheckpoint,
    data: common.EvalSplit,
    runner: common.LocalRunner,
    scorer: Callable,
    view,
    metadata,
) -> dict[str, Any]:
  """The paper's protocol (``resamples`` candidate draws), gathered over processes.

  Raises:
    DataTooSmallError: the split has fewer products than ``num_candidates`` or
      ``num_queries`` (:func:`check_protocol_fits`), before anything is scored.
  """
  ev = config.eval
  records = data_lib.retrieval_records(metadata)
  check_protocol_fits(config, data, records)
  process_index, process_count = jax.process_index(), jax.process_count()
  rows = runner.padded(ev.queries_per_step * ev.num_candidates)
  per_resample, seconds, pairs = [], 0.0, 0
  for resample in range(ev.resamples):
    seed = ev.seed + resample
    sets, path = load_retrieval_sets(config, data, records, seed)
    share = common.process_slice(len(sets.queries), process_index, process_count)
    local_sets = dataclasses.replace(sets, queries=sets.queries[share])
    partner = np.array([q.partner_position for q in local_sets.queries], np.int64)
    local = {'query_index': np.arange(share.start, share.stop)}
    start = time.perf_counter()
    for direction in DIRECTIONS:
      scores = score_candidate_sets(
          local_sets,
          view,
          direction,
          runner,
          scorer,
          queries_per_step=ev.queries_per_step,
          rows=rows,
          vocab_size=loaded.model_config.vocab_size,
          prefetch=ev.prefetch * ev.queries_per_step,
      )
      for key, value in _rank_fields(scores, partner).items():
        local[f'{direction}_{key}'] = value
    seconds += time.perf_counter() - start
    pairs += 2 * len(sets.queries) * ev.num_candidates
    gathered = common.gather_results(
        local,
        np.ones(len(partner), bool),
        common.process_capacity(len(sets.queries), process_count),
    )
    order = np.argsort(gathered['query_index'])
    entry = {
        'seed': seed,
        'sets_file': path,
        'filled_queries': sets.counts['num_filled_queries'],
        'filled_candidates_from': sets.counts['filled_candidates_from'],
    }
    for direction in DIRECTIONS:
      ranks = gathered[f'{direction}_rank'][order].astype(np.int64)
      optimistic = gathered[f'{direction}_optimistic_rank'][order].astype(np.int64)
      entry[direction] = _direction_summary(ranks, optimistic, ev.recall_ks, ev.num_candidates)
      entry[f'{direction}_ranks'] = ranks.tolist()
    per_resample.append(entry)
    logging.info('retrieval seed %d: %s', seed, {d: entry[d] for d in DIRECTIONS})

  result = {
      'queries': ev.num_queries,
      'candidates': ev.num_candidates,
      'resamples': ev.resamples,
      'seeds': [e['seed'] for e in per_resample],
      'ties': 'pessimistic',
      'score': 'ITM log-odds logits[1] - logits[0]',
      'directions': {d: dict(DIRECTION_INFO[d]) for d in DIRECTIONS},
      'not_applicable': f'R@K with K >= {ev.num_candidates} (the candidates per query): null',
      'fill': {
          'rule': FILL_RULE,
          'small_subcategories': [
              [_class_name(data, sub), count] for sub, count in sets.counts['small_subcategories']
          ],
          'queries_per_draw': [e['filled_queries'] for e in per_resample],
          # The filled queries' other candidates, every draw together.
          'candidates_from': {
              level: sum(e['filled_candidates_from'][level] for e in per_resample)
              for level in FILL_LEVEL_NAMES
          },
      },
  }
  for direction in DIRECTIONS:
    result[direction], result[f'{direction}_std'] = {}, {}
    for k in ev.recall_ks:
      mean, std = metrics.mean_and_std([e[direction][f'r{k}'] for e in per_resample])
      result[direction][f'r{k}'], result[f'{direction}_std'][f'r{k}'] = mean, std
  result.update(
      pairs_scored=pairs,
      seconds=seconds,
      pairs_per_second=pairs / max(seconds, 1e-9),
      per_resample=per_resample,
  )
  return result


def _class_name(data: common.EvalSplit, sub: int):
  names = data.class_names.get('sub', [])
  return names[sub] if 0 <= sub < len(names) else sub


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
  return (
      np.array([chosen[p][2] for p in products], dtype=object),
      np.array(products, dtype=object),
  )


def make_pooled_features(model) -> Callable:
  """``features(variables, images uint8, input_ids, text_valid) -> (visual [R, D], text [R, D])``.

  Visual: stage-4 visual tokens averaged; text: stage-4 text tokens averaged over the
  positions where ``text_valid``; both L2-normalised.
  """

  def features(variables, images, input_ids, text_valid):
    out = model.apply(
        variables, images_to_float(images), input_ids, train=False, return_features=True
    )
    visual = out['stage_maps'][-1].astype(jnp.float32).mean(axis=(1, 2))  # [R, D4]
    weights = text_valid.astype(jnp.float32)[..., None]  # [R, L, 1]
    text = (out['text_tokens'].astype(jnp.float32) * weights).sum(1) / jnp.maximum(
        weights.sum(1), 1.0
    )  # [R, D4]
    normalise = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return normalise(visual), normalise(text)

  return jax.jit(features)


def _blank_caption(loaded: common.LoadedCheckpoint, data: common.EvalSplit):
  """(ids of an empty caption [L], the tokenizer's pad id)."""
  tokenizer = loaded.tokenizer
  if tokenizer is None:
    tokenizer = data_lib.dataset_tokenizer(data.data_dir, data.name)
    if tokenizer is None:
      raise common.EvaluationError(
          f'first_stage=pooled_features needs a tokenizer (for the empty caption of the image '
          f'pass): neither {loaded.path} nor {data.description} has one.'
      )
  return tokenizer.encode('', loaded.model_config.text_length), tokenizer.pad_id


def _chunks(num_items: int, size: int) -> list[slice]:
  return [slice(start, min(start + size, num_items)) for start in range(0, num_items, size)]


def gallery_features(
    config, loaded, data, runner, view, record_ids: np.ndarray, rows: int
) -> tuple[np.ndarray, np.ndarray]:
  """Unimodal features of every gallery item, computed in shares and gathered:
  (image features [N, D], caption features [N, D])."""
  features_fn = make_pooled_features(loaded.model((), config.eval.dtype))
  blank_ids, pad_id = _blank_caption(loaded, data)
  size = data.image_size
  share = common.process_slice(len(record_ids), jax.process_index(), jax.process_count())
  local_ids = record_ids[share]

  image_parts, text_parts = [], []
  for loaded_chunk in view.pairs(list(local_ids), list(local_ids), rows):
    count = len(loaded_chunk['images'])
    common.check_token_ids(
        loaded_chunk['input_ids'], loaded.model_config.vocab_size, data.description
    )
    image_pass = runner.put_rows(
        {
            'images': loaded_chunk['images'],
            'input_ids': np.tile(blank_ids, (count, 1)),
            'text_valid': np.tile(blank_ids != pad_id, (count, 1)),
        },
        rows,
    )
    blank = np.full((count, size, size, 3), round(255 * BLANK_IMAGE_VALUE), np.uint8)
    text_pass = runner.put_rows(
        {
            'images': blank,
            'input_ids': loaded_chunk['input_ids'],
            'text_valid': loaded_chunk['input_ids'] != pad_id,
        },
        rows,
    )
    visual, _ = features_fn(runner.variables, *image_pass.values())
    _, text = features_fn(runner.variables, *text_pass.values())
    image_parts.append(np.asarray(visual)[:count])
    text_parts.append(np.asarray(text)[:count])
  width = resolve_pyramid(loaded.model_config).embed_dims[-1]
  concat = lambda parts: (
      np.concatenate(parts) if parts else np.zeros((0, width), np.float32)
  )  # a process with no items
  local = {'image': concat(image_parts), 'text': concat(text_parts)}
  gathered = common.gather_results(
      local,
      np.ones(len(local_ids), bool),
      common.process_capacity(len(record_ids), jax.process_count()),
  )
  return gathered['image'], gathered['text']


def score_pairs(
    view,
    runner,
    scorer,
    direction: str,
    query_ids: np.ndarray,
    candidate_ids: np.ndarray,
    *,
    rows: int,
    vocab_size: int,
) -> np.ndarray:
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
  for chunk, inputs in zip(
      _chunks(len(flat_query), rows), view.pairs(list(image_ids), list(text_ids), rows)
  ):
    common.check_token_ids(inputs['input_ids'], vocab_size, 'full-gallery retrieval')
    device_inputs = runner.put_rows(inputs, rows)
    margins = scorer(runner.variables, device_inputs['images'], device_inputs['input_ids'])
    if pending is not None:
      scores[pending[0]] = np.asarray(pending[1])[: pending[0].stop - pending[0].start]
    pending = (chunk, margins)
  if pending is not None:
    scores[pending[0]] = np.asarray(pending[1])[: pending[0].stop - pending[0].start]
  return scores.reshape(num_queries, width)


def ranks_among_candidates(
    scores: np.ndarray, candidates: np.ndarray, partner: np.ndarray
) -> dict[str, np.ndarray]:
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


def full_gallery_retrieval(config, loaded, data, runner, scorer, view, metadata) -> dict[str, Any]:
  """Every query against the whole gallery, exhaustive or two-stage (docs/evaluation.md)."""
  ev = config.eval
  if ev.first_stage not in FIRST_STAGES:
    raise common.EvaluationError(
        f'eval.first_stage must be one of {FIRST_STAGES}, ' f'got {ev.first_stage!r}.'
    )
  record_ids, _ = gallery_of(metadata)
  gallery_size = len(record_ids)
  num_queries = min(ev.full_gallery_queries or gallery_size, gallery_size)
  queries = np.sort(np.random.default_rng(ev.seed).choice(gallery_size, num_queries, replace=False))
  share = common.process_slice(num_queries, jax.process_index(), jax.process_count())
  local_queries = queries[share]
  rows = runner.padded(ev.queries_per_step * ev.num_candidates)
  start = time.perf_counter()
  if ev.first_stage == 'pooled_features':
    image_features, text_features = gallery_features(
        config, loaded, data, runner, view, record_ids, rows
    )
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
    scores = score_pairs(
        view,
        runner,
        scorer,
        direction,
        record_ids[local_queries],
        record_ids[candidates],
        rows=rows,
        vocab_size=loaded.model_config.vocab_size,
    )
    cross_seconds += time.perf_counter() - start
    for key, value in ranks_among_candidates(scores, candidates, local_queries).items():
      local[f'{direction}_{key}'] = value
    local[f'{direction}_first_stage_hit'] = (candidates == local_queries[:, None]).any(axis=1)
  gathered = common.gather_results(
      local,
      np.ones(len(local_queries), bool),
      common.process_capacity(num_queries, jax.process_count()),
  )
  order = np.argsort(gathered['query'])
  result = {
      'gallery': gallery_size,
      'queries': num_queries,
      'first_stage': ev.first_stage,
      'top_k': top_k,
      'query_record_ids': record_ids[gathered['query'][order]].tolist(),
  }
  for direction in DIRECTIONS:
    ranks = gathered[f'{direction}_rank'][order].astype(np.float64)
    optimistic = gathered[f'{direction}_optimistic_rank'][order].astype(np.float64)
    summary = metrics.recalls_by_name(metrics.recall_at_k(ranks, ev.recall_ks, gallery_size))
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


# ----------------------------------------------------------------------------- both protocols


def run_retrieval(
    config,
    loaded: common.LoadedCheckpoint,
    data: common.EvalSplit,
    scorer: Callable | None = None,
) -> dict[str, Any]:
  """The paper's protocol, and the full-gallery one when ``eval.full_gallery``.

  The full gallery does not depend on the protocol's candidate sets: on a split too small
  for them (fewer products than ``num_candidates`` or ``num_queries``) the protocol is
  skipped (``protocol_skipped`` holds why) and the full gallery still runs. ``scorer``
  replaces the checkpoint's ITM scorer (:func:`make_itm_scorer`'s signature).

  Raises:
    DataTooSmallError: the split is too small for the protocol and ``eval.full_gallery``
      is off.
  """
  ev = config.eval
  if ev.queries_per_step < 1 or ev.resamples < 1:
    raise common.EvaluationError('eval.queries_per_step and eval.resamples must be >= 1.')
  metadata, view = data_lib.split_view(
      data.data_dir,
      data.name,
      data.split,
      image_size=data.image_size,
      prefetch=ev.prefetch,
      num_workers=common.num_workers(config),
  )
  try:
    runner = common.LocalRunner(loaded.variables)
    scorer = scorer or make_itm_scorer(loaded.model(('itm',), ev.dtype))
    try:
      result = retrieval_protocol(config, loaded, data, runner, scorer, view, metadata)
    except common.DataTooSmallError as error:
      if not ev.full_gallery:
        raise
      result = {'protocol_skipped': str(error)}
    if ev.full_gallery:
      result['full_gallery'] = full_gallery_retrieval(
          config, loaded, data, runner, scorer, view, metadata
      )
  finally:
    view.close()
  return result


# ----------------------------------------------------------------------------- output


DIRECTIONS_NOTE = (
    'TIR (text -> image): the query is a caption, ranked against candidate '
    'images; ITR (image -> text): the query is an image, ranked against '
    'candidate captions.'
)


def _recall(value, std=None) -> str:
  """A recall cell: a percentage, or n/a (R@K with K >= the candidates)."""
  return 'n/a' if value is None else common.percent(value, std)


def _not_applicable_note(recalls: Sequence[dict], candidates: int, what: str) -> str:
  if not any(value is None for r in recalls for value in r.values()):
    return ''
  return (
      f'\n\nn/a: R@K with K >= the {candidates} {what} (every partner ranks within K, so '
      'it would read 100 %).'
  )


def _fill_line(result: dict) -> str:
  """How many queries the fill rule touched and where their other candidates came from."""
  fill = result.get('fill')
  if fill is None:
    return ''
  per_draw = fill['queries_per_draw']
  if not any(per_draw):
    return (
        f'\n\nCandidates: every query\'s {result["candidates"] - 1} others from its own '
        "sub-category (the paper's protocol)."
    )
  queries = (
      f'{per_draw[0]} of {result["queries"]} queries'
      if len(set(per_draw)) == 1
      else f'{" / ".join(map(str, per_draw))} of {result["queries"]} queries (per draw)'
  )
  counts = fill['candidates_from']
  sources = ', '.join(f'{counts[level]:,} {name}' for level, name in FILL_LEVEL_NAMES.items())
  return (
      f'\n\nFill rule: {queries} have fewer than {result["candidates"]} products in their '
      f'sub-category; their {sum(counts.values()):,} other candidates'
      f'{" (all draws)" if len(per_draw) > 1 else ""}: {sources} (docs/evaluation.md).'
  )


def format_retrieval(result: dict, with_paper: bool) -> str:
  """The printed report: the paper's protocol (or why it was skipped), the full gallery."""
  if 'protocol_skipped' in result:
    text = f"Retrieval on the paper's protocol: skipped: {result['protocol_skipped']}"
  else:
    ks = [key for key in result['tir'] if key.startswith('r')]
    header = ['direction'] + [f'R@{k[1:]}' for k in ks]
    if with_paper:
      header += [f'paper R@{k[1:]}' for k in ks]
    rows = []
    for direction in DIRECTIONS:
      row = [DIRECTION_NAMES[direction]]
      row += [_recall(result[direction][k], result[f'{direction}_std'][k]) for k in ks]
      if with_paper:
        row += [common.percent(PAPER_RETRIEVAL[direction].get(k)) for k in ks]
      rows.append(row)
    title = (
        f'Retrieval (zero-shot, ITM cross-encoder): {result["queries"]} queries x '
        f'{result["candidates"]} candidates, {result["resamples"]} candidate draw(s) '
        f'(seeds {result["seeds"]}), checkpoint step {result.get("step", "?")}, '
        f'{result["pairs_scored"]:,} pairs in {result["seconds"]:.1f} s'
    )
    text = (
        title
        + '\n\n'
        + common.markdown_table(header, rows)
        + '\n\n'
        + DIRECTIONS_NOTE
        + _fill_line(result)
        + _not_applicable_note(
            [result[d] for d in DIRECTIONS], result['candidates'], 'candidates per query'
        )
    )
  if 'full_gallery' in result:
    gallery = result['full_gallery']
    gks = [key for key in gallery['tir'] if key.startswith('r') and key[1:].isdigit()]
    header = (
        ['direction'] + [f'R@{k[1:]}' for k in gks] + [f'first stage recall@{gallery["top_k"]}']
    )
    rows = [
        [DIRECTION_NAMES[d]]
        + [_recall(gallery[d][k]) for k in gks]
        + [common.percent(gallery[d]['first_stage_recall'])]
        for d in DIRECTIONS
    ]
    cost = gallery['cost']
    text += (
        f'\n\nFull gallery: {gallery["queries"]} queries x {gallery["gallery"]} products, '
        f'first stage {gallery["first_stage"]} (top {gallery["top_k"]}); cross-encoder '
        f'{cost["cross_encoder_pairs"]:,} pairs ({cost["cross_encoder_seconds"]:.1f} s; '
        f'exhaustive would be {cost["exhaustive_pairs"]:,}), first stage '
        f'{cost["unimodal_passes"]:,} unimodal passes ({cost["first_stage_seconds"]:.1f} s)'
        '\n\n'
        + common.markdown_table(header, rows)
        + _not_applicable_note(
            [gallery[d] for d in DIRECTIONS], gallery['gallery'], 'products of the gallery'
        )
    )
  return text


# ----------------------------------------------------------------------------- task


def eval_retrieval(config, workdir: str) -> dict[str, Any]:
  """Task ``eval_retrieval``: writes ``results/retrieval.json`` and prints the table."""
  common.maybe_initialize_distributed(config)
  config, loaded, data = common.prepare_evaluation(config, workdir, ('itm',))
  result = {
      **common.result_header(config, loaded, data, 'eval_retrieval'),
      **run_retrieval(config, loaded, data),
  }
  common.finish(
      workdir, 'retrieval', result, format_retrieval(result, data.name == common.PAPER_DATASET)
  )
  return result
