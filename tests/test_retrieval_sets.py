"""Tests of the retrieval candidate sets (input_pipeline.retrieval_sets)."""

import json
import random

import numpy as np
import pytest

from input_pipeline import retrieval_sets as rs

# Products per sub-category; sub-categories 3 and 4 are too small for 10
# candidates.
PRODUCTS_PER_SUBCATEGORY = {0: 12, 1: 15, 2: 10, 3: 9, 4: 2}
VIEWS = 3
NUM_CANDIDATES = 10
NUM_QUERIES = 20


def make_records():
  records = []
  for sub, count in PRODUCTS_PER_SUBCATEGORY.items():
    for p in range(count):
      for view in (2, 0, 1):  # the smallest pose is not listed first
        records.append(
            rs.RetrievalRecord(
                id=f's{sub}p{p}v{view}',
                product_id=f's{sub}p{p}',
                subcategory=sub,
                pose=f'pose_{view}',
            )
        )
  return records


def build(seed=0, records=None, **kwargs):
  options = dict(
      num_queries=NUM_QUERIES,
      num_candidates=NUM_CANDIDATES,
      seed=seed,
      dataset='toy',
      split='validation',
  )
  options.update(kwargs)
  return rs.build_retrieval_sets(records or make_records(), **options)


def test_candidates_follow_the_protocol():
  records = {r.id: r for r in make_records()}
  sets = build()
  assert len(sets.queries) == NUM_QUERIES
  assert len({q.product_id for q in sets.queries}) == NUM_QUERIES
  for query in sets.queries:
    candidates = query.candidate_record_ids
    assert len(candidates) == NUM_CANDIDATES
    assert len(set(query.candidate_product_ids)) == NUM_CANDIDATES  # distinct
    assert query.candidate_product_ids.count(query.product_id) == 1
    assert candidates[query.partner_position] == query.record_id
    assert query.candidate_product_ids[query.partner_position] == query.product_id
    for record_id, product_id in zip(candidates, query.candidate_product_ids):
      record = records[record_id]
      assert record.subcategory == query.subcategory
      assert record.product_id == product_id
      assert record.pose == 'pose_0'  # one view per product: the smallest pose
  positions = {q.partner_position for q in sets.queries}
  assert len(positions) > 3  # the partner is not always at the same place


def test_small_subcategories_are_skipped_and_counted():
  sets = build()
  assert {q.subcategory for q in sets.queries} <= {0, 1, 2}
  counts = sets.counts
  assert counts['num_products'] == sum(PRODUCTS_PER_SUBCATEGORY.values())
  assert counts['num_eligible_products'] == 12 + 15 + 10
  assert counts['num_ineligible_products'] == 9 + 2
  assert counts['small_subcategories'] == [[3, 9], [4, 2]]
  assert counts['num_records'] == VIEWS * sum(PRODUCTS_PER_SUBCATEGORY.values())


def test_seed_makes_the_draw_repeatable():
  assert build(seed=1) == build(seed=1)
  assert build(seed=1).queries != build(seed=2).queries


def test_record_order_does_not_matter():
  shuffled = make_records()
  random.Random(0).shuffle(shuffled)
  assert build(records=shuffled) == build()


def test_too_few_eligible_products_is_an_error():
  with pytest.raises(rs.RetrievalSetsError, match='Only 37 products'):
    build(num_queries=38)


def test_product_in_two_subcategories_is_an_error():
  records = make_records() + [
      rs.RetrievalRecord(id='odd', product_id='s0p0', subcategory=1, pose='pose_9')
  ]
  with pytest.raises(rs.RetrievalSetsError, match='s0p0'):
    build(records=records)


def test_load_or_build_writes_then_reuses(tmp_path):
  path = str(tmp_path / 'sets.json')
  records = make_records()
  options = dict(
      num_queries=NUM_QUERIES,
      num_candidates=NUM_CANDIDATES,
      seed=4,
      dataset='toy',
      split='validation',
  )
  built = rs.load_or_build(path, records, **options)
  with open(path) as f:
    stored = json.load(f)
  assert stored['params']['seed'] == 4
  assert stored['params']['dataset'] == 'toy'
  assert stored['params']['split'] == 'validation'
  assert stored['shared_directions'] is True
  assert stored['counts']['num_queries'] == NUM_QUERIES
  # The file, not a new draw, is what a second call returns: edit it and see.
  stored['queries'][0]['partner_position'] = 99
  with open(path, 'w') as f:
    json.dump(stored, f)
  reused = rs.load_or_build(path, records, **options)
  assert reused.queries[0].partner_position == 99
  assert reused.queries[1:] == built.queries[1:]


def test_load_or_build_refuses_other_parameters(tmp_path):
  path = str(tmp_path / 'sets.json')
  records = make_records()
  rs.load_or_build(
      path,
      records,
      num_queries=NUM_QUERIES,
      num_candidates=NUM_CANDIDATES,
      seed=4,
      dataset='toy',
      split='validation',
  )
  with pytest.raises(rs.RetrievalSetsError, match='seed: file 4, requested 5'):
    rs.load_or_build(
        path,
        records,
        num_queries=NUM_QUERIES,
        num_candidates=NUM_CANDIDATES,
        seed=5,
        dataset='toy',
        split='validation',
    )
  with pytest.raises(rs.RetrievalSetsError, match='not in toy validation'):
    rs.load_or_build(
        path,
        records[: len(records) // 2],
        num_queries=NUM_QUERIES,
        num_candidates=NUM_CANDIDATES,
        seed=4,
        dataset='toy',
        split='validation',
    )


def test_unreadable_file_is_an_error(tmp_path):
  path = tmp_path / 'sets.json'
  path.write_text('{not json')
  with pytest.raises(rs.RetrievalSetsError, match='sets.json'):
    rs.load(str(path))


class FakeView:
  """Record `i`'s image is filled with i, its caption is [i, i, i]."""

  def __init__(self, records):
    self.index = {r.id: i for i, r in enumerate(records)}

  def images(self, ids):
    return np.stack([np.full((4, 4, 3), self.index[i], np.uint8) for i in ids])

  def input_ids(self, ids):
    return np.array([[self.index[i]] * 3 for i in ids], np.int32)

  def pairs(self, image_ids, text_ids, batch_size, prefetch=None):
    for start in range(0, len(image_ids), batch_size):
      rows = slice(start, start + batch_size)
      yield {'images': self.images(image_ids[rows]), 'input_ids': self.input_ids(text_ids[rows])}


@pytest.mark.parametrize('direction', ['tir', 'itr'])
def test_candidate_batches(direction):
  records = make_records()
  view = FakeView(records)
  sets = build(num_queries=3)
  batches = list(rs.candidate_batches(sets, view, direction))
  assert [b['query_index'] for b in batches] == [0, 1, 2]
  for batch, query in zip(batches, sets.queries):
    assert batch['images'].shape == (NUM_CANDIDATES, 4, 4, 3)
    assert batch['input_ids'].shape == (NUM_CANDIDATES, 3)
    assert batch['partner_position'] == query.partner_position
    candidates = [view.index[i] for i in query.candidate_record_ids]
    query_record = view.index[query.record_id]
    image_records = batch['images'][:, 0, 0, 0].tolist()
    text_records = batch['input_ids'][:, 0].tolist()
    if direction == 'tir':  # the query's caption against each candidate image
      assert image_records == candidates
      assert text_records == [query_record] * NUM_CANDIDATES
    else:  # the query's image against each candidate caption
      assert image_records == [query_record] * NUM_CANDIDATES
      assert text_records == candidates
    # The true pair sits at partner_position.
    assert image_records[query.partner_position] == query_record
    assert text_records[query.partner_position] == query_record


def test_unknown_direction_is_an_error():
  with pytest.raises(rs.RetrievalSetsError, match='direction'):
    rs.candidate_batches(build(num_queries=1), FakeView([]), 'both')
