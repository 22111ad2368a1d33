"""Candidate sets of the paper's retrieval protocol, drawn from a seed.

The protocol (MVLT paper, Table 2): `num_queries` (1,000) query products from
the evaluation split; for each, `num_candidates` (101) candidates: the true
partner and `num_candidates - 1` other products of the SAME sub-category.
TIR ranks the candidates' images for the query's text; ITR ranks the
candidates' texts for the query's image. Both directions share the same
candidate product lists (`shared_directions: true` in the file).

Decisions:

* One view per product: the record with the smallest pose (then the smallest
  id) among the product's records; with no pose field, the smallest id. It
  supplies the product's image and caption in both directions. The choice
  does not depend on the order of the records on disk.
* Products of a sub-category with fewer than `num_candidates` products
  ("small" sub-categories) cannot get `num_candidates - 1` distractors of their
  own sub-category. What happens to them is `small_subcategories`:

  - `'skip'` (the paper's protocol only; the default of this module): they are
    never drawn as queries (still counted in the metadata under
    `small_subcategories` and `num_ineligible_products`); with fewer than
    `num_queries` eligible products left the build fails with a clear message.
  - `'fill'` (what the evaluator uses): when there are at least `num_queries`
    eligible products the draw is exactly the `'skip'` one (the paper's
    protocol, the same random draws). Otherwise every eligible product is a
    query and the remaining queries are drawn among the other products; such a
    query's candidates are every other product of its sub-category, then
    products of its main category (drawn), then products of the rest of the
    split (drawn). Each query records how many of its distractors came from
    each level (`candidates_from`: sub-category, main category, catalog) and
    `counts` sums them over the filled queries. Only a split with fewer than
    `num_candidates` (or `num_queries`) products fails.
* Draws: queries without replacement among the eligible products (sorted by
  product id, so the record order does not matter), then for each query its
  distractors without replacement among the other products of its
  sub-category and a uniform position for the partner (`partner_position`).

The sets are stored as JSON with their parameters (dataset, split, seed,
counts, the small-sub-category rule) so that a run can be repeated;
`load_or_build` reuses a stored file and refuses one built for other
parameters, or by an older format (version 1 files predate the fill rule).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import tempfile
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from input_pipeline import errors

FORMAT_NAME = 'mvlt_retrieval_sets'
# 2: the small-sub-category rule (`small_subcategories`) in the parameters, and each query's
# `category` and `candidates_from`. Files of version 1 are refused (built by the older rule).
FORMAT_VERSION = 2
VIEW_RULE = 'smallest pose, then smallest id, per product'
DEFAULT_NUM_QUERIES = 1000
DEFAULT_NUM_CANDIDATES = 101
DIRECTIONS = ('tir', 'itr')
SMALL_SUBCATEGORY_RULES = ('skip', 'fill')
# Where a query's distractors come from, in the order the fill rule uses them.
FILL_LEVELS = ('subcategory', 'category', 'catalog')


class RetrievalSetsError(errors.PrepareError):
  """Retrieval sets cannot be built, read, or do not fit the request."""


@dataclasses.dataclass(frozen=True)
class RetrievalRecord:
  """What the protocol needs to know of one record of the evaluation split."""

  id: str
  product_id: str
  subcategory: int
  pose: Any = None  # str or int; None when the dataset has no pose
  category: int | None = None  # the main category; None when unknown (no main-category level)


@dataclasses.dataclass(frozen=True)
class RetrievalQuery:
  """One query product and its candidates (the same list for TIR and ITR).

  `record_id` is the query's record (its caption is the TIR query, its image
  the ITR query); `candidate_record_ids[partner_position] == record_id`.
  """

  product_id: str
  record_id: str
  subcategory: int
  candidate_record_ids: tuple[str, ...]
  candidate_product_ids: tuple[str, ...]
  partner_position: int
  category: int | None = None
  # Distractors (candidates other than the partner) from each of FILL_LEVELS: (C - 1, 0, 0)
  # for a query of the paper's protocol.
  candidates_from: tuple[int, ...] = ()

  @property
  def filled(self) -> bool:
    """Whether some distractors come from outside the query's sub-category."""
    return any(self.candidates_from[1:])


@dataclasses.dataclass(frozen=True)
class RetrievalSets:
  """Queries plus the parameters and counts they were built with."""

  params: dict[str, Any]
  counts: dict[str, Any]
  queries: tuple[RetrievalQuery, ...]

  def to_json(self) -> dict[str, Any]:
    return {
        'format': FORMAT_NAME,
        'format_version': FORMAT_VERSION,
        'params': self.params,
        'counts': self.counts,
        'shared_directions': True,
        'queries': [dataclasses.asdict(q) for q in self.queries],
    }

  @classmethod
  def from_json(cls, data: Mapping[str, Any], source: str) -> RetrievalSets:
    if data.get('format') != FORMAT_NAME or data.get('format_version') != FORMAT_VERSION:
      older = data.get('format') == FORMAT_NAME and data.get('format_version') == 1
      raise RetrievalSetsError(
          f'{source}: not a retrieval-sets file of format {FORMAT_NAME} '
          f"version {FORMAT_VERSION} (found {data.get('format')!r} version "
          f"{data.get('format_version')!r})"
          + (
              '; version 1 files were built by the older rule (no fill of small '
              'sub-categories): delete the file to build new sets.'
              if older
              else '.'
          )
      )
    try:
      queries = tuple(
          RetrievalQuery(
              product_id=q['product_id'],
              record_id=q['record_id'],
              subcategory=int(q['subcategory']),
              candidate_record_ids=tuple(q['candidate_record_ids']),
              candidate_product_ids=tuple(q['candidate_product_ids']),
              partner_position=int(q['partner_position']),
              category=None if q.get('category') is None else int(q['category']),
              candidates_from=tuple(int(n) for n in q['candidates_from']),
          )
          for q in data['queries']
      )
      return cls(params=dict(data['params']), counts=dict(data['counts']), queries=queries)
    except (KeyError, TypeError, ValueError) as e:
      raise RetrievalSetsError(f'{source}: malformed retrieval sets: {e!r}.') from e


def _representatives(records: Iterable[RetrievalRecord]) -> dict[str, RetrievalRecord]:
  """The one record used per product (see the module docstring)."""
  chosen: dict[str, RetrievalRecord] = {}

  def order(record: RetrievalRecord):
    return (record.pose is not None, record.pose, record.id)

  for record in records:
    current = chosen.get(record.product_id)
    if current is not None and current.subcategory != record.subcategory:
      raise RetrievalSetsError(
          f'Product {record.product_id!r}: records {current.id!r} and '
          f'{record.id!r} have different sub-categories '
          f'({current.subcategory} and {record.subcategory}).'
      )
    if current is None or order(record) < order(current):
      chosen[record.product_id] = record
  return chosen


def build_retrieval_sets(
    records: Sequence[RetrievalRecord],
    *,
    num_queries: int = DEFAULT_NUM_QUERIES,
    num_candidates: int = DEFAULT_NUM_CANDIDATES,
    seed: int,
    dataset: str = '',
    split: str = '',
    small_subcategories: str = 'skip',
) -> RetrievalSets:
  """Draws the query products and their same-sub-category candidates.

  Args:
    records: every record of the evaluation split.
    num_queries: query products to draw.
    num_candidates: candidates per query, the true partner included.
    seed: the draw's seed.
    dataset, split: recorded in the parameters (where `records` came from).
    small_subcategories: 'skip' (products of sub-categories with fewer than
      `num_candidates` products are never queries) or 'fill' (they are, when
      there are too few other queries, with candidates filled from the main
      category, then the whole split; see the module docstring).

  Raises:
    RetrievalSetsError: duplicate record ids, a product spread over several
      sub-categories, or too few products: 'skip', fewer eligible products
      than `num_queries`; 'fill', fewer products than `num_candidates` or
      `num_queries`.
  """
  if num_candidates < 2:
    raise RetrievalSetsError(
        f'num_candidates must be >= 2 (partner + distractors), got ' f'{num_candidates}.'
    )
  if num_queries < 1:
    raise RetrievalSetsError(f'num_queries must be >= 1, got {num_queries}.')
  if small_subcategories not in SMALL_SUBCATEGORY_RULES:
    raise RetrievalSetsError(
        f'small_subcategories must be one of {SMALL_SUBCATEGORY_RULES}, got '
        f'{small_subcategories!r}.'
    )
  # Plain Python values (numpy scalars do not serialise to JSON).
  records = [
      dataclasses.replace(
          r,
          id=str(r.id),
          product_id=str(r.product_id),
          subcategory=int(r.subcategory),
          category=None if r.category is None else int(r.category),
      )
      for r in records
  ]
  ids = collections.Counter(r.id for r in records)
  duplicated = [i for i, n in ids.items() if n > 1]
  where = f"{dataset or 'the records'} {split}".strip()
  if duplicated:
    raise RetrievalSetsError(f'Record ids are not unique in {where}: {sorted(duplicated)[:5]}.')

  products = _representatives(records)
  by_subcategory: dict[int, list[str]] = collections.defaultdict(list)
  for product_id in sorted(products):
    by_subcategory[products[product_id].subcategory].append(product_id)
  small = {sub: len(p) for sub, p in sorted(by_subcategory.items()) if len(p) < num_candidates}
  eligible = [p for sub, group in sorted(by_subcategory.items()) if sub not in small for p in group]
  eligible.sort()
  counts = {
      'num_records': len(records),
      'num_products': len(products),
      'num_subcategories': len(by_subcategory),
      'num_eligible_products': len(eligible),
      'num_ineligible_products': len(products) - len(eligible),
      'small_subcategories': [[sub, n] for sub, n in small.items()],
      'num_queries': num_queries,
  }
  fill = small_subcategories == 'fill'
  if fill and len(products) < num_candidates:
    raise RetrievalSetsError(
        f'Only {len(products)} products in {where}; {num_candidates} candidates per query '
        'need at least as many products. Use fewer candidates.'
    )
  if fill and len(products) < num_queries:
    raise RetrievalSetsError(
        f'Only {len(products)} products in {where}; {num_queries} queries were asked for. '
        'Use fewer queries.'
    )
  if not fill and len(eligible) < num_queries:
    raise RetrievalSetsError(
        f'Only {len(eligible)} products of {where} '
        f'are in a sub-category with at least {num_candidates} products; '
        f'{num_queries} queries were asked for. Use fewer queries or '
        "candidates (or small_subcategories='fill')."
    )

  rng = np.random.default_rng(seed)
  if len(eligible) >= num_queries:  # the paper's protocol
    query_products = [eligible[i] for i in rng.choice(len(eligible), num_queries, replace=False)]
  else:  # 'fill': every eligible product, then a draw among the others
    eligible_set = set(eligible)
    others = [p for p in sorted(products) if p not in eligible_set]
    query_products = [eligible[i] for i in rng.permutation(len(eligible))]
    picked = rng.choice(len(others), num_queries - len(eligible), replace=False)
    query_products += [others[i] for i in picked]

  filler = _Filler(products, by_subcategory)
  queries = []
  for product_id in query_products:
    record = products[product_id]
    if record.subcategory in small:
      candidates, candidates_from = filler.fill(product_id, num_candidates - 1, rng)
    else:
      others = [p for p in by_subcategory[record.subcategory] if p != product_id]
      picked = rng.choice(len(others), size=num_candidates - 1, replace=False)
      candidates = [others[i] for i in picked]
      candidates_from = (num_candidates - 1, 0, 0)
    partner_position = int(rng.integers(num_candidates))
    candidates.insert(partner_position, product_id)
    queries.append(
        RetrievalQuery(
            product_id=product_id,
            record_id=record.id,
            subcategory=record.subcategory,
            candidate_record_ids=tuple(products[p].id for p in candidates),
            candidate_product_ids=tuple(candidates),
            partner_position=partner_position,
            category=record.category,
            candidates_from=candidates_from,
        )
    )
  filled = [q for q in queries if q.filled]
  counts['num_filled_queries'] = len(filled)
  counts['filled_candidates_from'] = {
      level: sum(q.candidates_from[i] for q in filled) for i, level in enumerate(FILL_LEVELS)
  }
  params = {
      'dataset': dataset,
      'split': split,
      'seed': seed,
      'num_queries': num_queries,
      'num_candidates': num_candidates,
      'view_rule': VIEW_RULE,
      'small_subcategories': small_subcategories,
  }
  return RetrievalSets(params=params, counts=counts, queries=tuple(queries))


class _Filler:
  """The distractors of a query whose sub-category is too small (the fill rule)."""

  def __init__(self, products: Mapping[str, RetrievalRecord], by_subcategory):
    self.products = products
    self.by_subcategory = by_subcategory
    self.ordered = np.array(sorted(products), dtype=object)
    self.categories = np.array(
        [-1 if products[p].category is None else products[p].category for p in self.ordered]
    )
    self.subcategories = np.array([products[p].subcategory for p in self.ordered])
    self._pools: dict[tuple[int, bool], np.ndarray] = {}

  def _pool(self, record: RetrievalRecord, same_category: bool) -> np.ndarray:
    """Products outside the query's sub-category, in its main category or not (sorted)."""
    key = (record.subcategory, same_category)
    if key not in self._pools:
      other_sub = self.subcategories != record.subcategory
      if record.category is None:
        in_category = np.zeros(len(self.ordered), bool)
      else:
        in_category = self.categories == record.category
      self._pools[key] = self.ordered[other_sub & (in_category == same_category)]
    return self._pools[key]

  def fill(self, product_id: str, needed: int, rng) -> tuple[list[str], tuple[int, ...]]:
    record = self.products[product_id]
    candidates = [p for p in self.by_subcategory[record.subcategory] if p != product_id]
    taken = [len(candidates)]
    for same_category in (True, False):
      pool = self._pool(record, same_category)
      missing = needed - len(candidates)
      if missing >= len(pool):
        chosen = list(pool)
      else:
        chosen = [pool[i] for i in rng.choice(len(pool), size=missing, replace=False)]
      candidates += chosen
      taken.append(len(chosen))
    return candidates, tuple(taken)


def save(sets: RetrievalSets, path: str) -> None:
  """Writes the sets as JSON (atomically: a temporary file, then a rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile('w', dir=directory, suffix='.tmp', delete=False) as f:
    json.dump(sets.to_json(), f)
  os.replace(f.name, path)


def load(path: str) -> RetrievalSets:
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise RetrievalSetsError(f'{path}: cannot read retrieval sets: {e}.') from e
  return RetrievalSets.from_json(data, source=path)


def load_or_build(
    path: str,
    records: Sequence[RetrievalRecord],
    *,
    num_queries: int = DEFAULT_NUM_QUERIES,
    num_candidates: int = DEFAULT_NUM_CANDIDATES,
    seed: int,
    dataset: str = '',
    split: str = '',
    small_subcategories: str = 'skip',
) -> RetrievalSets:
  """Reads the sets at `path`, or builds and writes them if absent
  (`build_retrieval_sets`).

  Raises:
    RetrievalSetsError: the file was built with other parameters (each
      difference is named), or names records that `records` lacks.
  """
  requested = {
      'dataset': dataset,
      'split': split,
      'seed': seed,
      'num_queries': num_queries,
      'num_candidates': num_candidates,
      'view_rule': VIEW_RULE,
      'small_subcategories': small_subcategories,
  }
  if not os.path.exists(path):
    sets = build_retrieval_sets(
        records,
        num_queries=num_queries,
        num_candidates=num_candidates,
        seed=seed,
        dataset=dataset,
        split=split,
        small_subcategories=small_subcategories,
    )
    save(sets, path)
    return sets
  sets = load(path)
  differences = [
      f'{k}: file {sets.params.get(k)!r}, requested {v!r}'
      for k, v in requested.items()
      if sets.params.get(k) != v
  ]
  if differences:
    raise RetrievalSetsError(
        f"{path} was built for other parameters ({'; '.join(differences)}). "
        'Delete it or point to another file to build new sets.'
    )
  known = {r.id for r in records}
  missing = sorted({i for q in sets.queries for i in q.candidate_record_ids} - known)
  if missing:
    raise RetrievalSetsError(
        f'{path}: {len(missing)} record ids are not in {dataset} {split} '
        f'(e.g. {missing[:3]}); the split changed since the sets were built.'
    )
  return sets


def records_from_metadata(metadata) -> list[RetrievalRecord]:
  """RetrievalRecords from a `pipeline.SplitMetadata`."""
  poses = metadata.poses if metadata.poses is not None else [None] * len(metadata.ids)
  return [
      RetrievalRecord(
          id=str(i),
          product_id=str(p),
          subcategory=int(s),
          pose=None if pose is None else _plain(pose),
          category=int(c),
      )
      for i, p, s, c, pose in zip(
          metadata.ids, metadata.product_ids, metadata.subcategories, metadata.categories, poses
      )
  ]


def _plain(value: Any) -> Any:
  """numpy scalars -> Python values (so poses compare and serialise)."""
  return value.item() if isinstance(value, np.generic) else value


class RecordView(Protocol):
  """Decoded images and captions of records, looked up by record id."""

  def images(self, ids: Sequence[str]) -> np.ndarray:  # uint8 [n, S, S, 3]
    ...

  def input_ids(self, ids: Sequence[str]) -> np.ndarray:  # int32 [n, L]
    ...

  def pairs(
      self,
      image_ids: Sequence[str],
      text_ids: Sequence[str],
      batch_size: int,
      *,
      prefetch: int | None = None,
  ) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `batch_size` rows: `images` of `image_ids[i]`, `input_ids` of
    `text_ids[i]` (`pipeline.SplitView.pairs`)."""
    ...


def candidate_batches(
    sets: RetrievalSets, view: RecordView, direction: str, *, prefetch: int | None = None
) -> Iterator[dict[str, Any]]:
  """The cross-encoder's inputs, one query per batch (static shapes).

  Args:
    sets: the retrieval sets.
    view: where images and captions of the records are read from (its
      `pairs` pipeline prefetches the next queries).
    direction: "tir" (the query's caption with each candidate's image) or
      "itr" (the query's image with each candidate's caption).
    prefetch: queries read ahead (None: the view's default).

  Yields:
    dicts with `images` uint8 [C, S, S, 3], `input_ids` int32 [C, L]
    (C = num_candidates), `partner_position` (int: the row of the true pair)
    and `query_index` (int: position of the query in `sets.queries`).
  """
  if direction not in DIRECTIONS:
    raise RetrievalSetsError(f'direction must be one of {DIRECTIONS}, got {direction!r}.')
  return _candidate_batches(sets, view, direction, prefetch)


def _candidate_batches(
    sets: RetrievalSets, view: RecordView, direction: str, prefetch: int | None
) -> Iterator[dict[str, Any]]:
  if not sets.queries:
    return
  count = len(sets.queries[0].candidate_record_ids)
  candidates = [i for q in sets.queries for i in q.candidate_record_ids]  # [Q * C]
  queries = [q.record_id for q in sets.queries for _ in range(count)]  # [Q * C]
  if any(len(q.candidate_record_ids) != count for q in sets.queries):
    raise RetrievalSetsError('every query must have the same number of candidates.')
  image_ids, text_ids = (candidates, queries) if direction == 'tir' else (queries, candidates)
  for query_index, (query, batch) in enumerate(
      zip(sets.queries, view.pairs(image_ids, text_ids, count, prefetch=prefetch))
  ):
    yield {
        'images': batch['images'],
        'input_ids': batch['input_ids'],
        'partner_position': query.partner_position,
        'query_index': query_index,
    }
