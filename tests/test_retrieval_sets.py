"""Tests of the retrieval candidate sets (input_pipeline.retrieval_sets)."""

import dataclasses
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


# ----------------------------------------------------------------------------- the fill rule

# Main category of each sub-category: 3 shares main category 1 with 2; 4 is alone in 2.
CATEGORY_OF = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2}


def records_with_categories():
  return [dataclasses.replace(r, category=CATEGORY_OF[r.subcategory]) for r in make_records()]


def test_fill_keeps_the_papers_draw_when_the_data_allows_it():
  records = records_with_categories()
  skip = build(records=records)  # 20 queries, 37 eligible products
  fill = build(records=records, small_subcategories='fill')
  assert [q.candidate_record_ids for q in fill.queries] == [
      q.candidate_record_ids for q in skip.queries
  ]
  assert [q.partner_position for q in fill.queries] == [q.partner_position for q in skip.queries]
  assert fill.counts['num_filled_queries'] == 0
  assert all(q.candidates_from == (NUM_CANDIDATES - 1, 0, 0) for q in fill.queries)


def test_fill_rule_for_small_subcategories():
  records = records_with_categories()
  by_id = {r.product_id: r for r in records}
  sets = build(records=records, num_queries=45, small_subcategories='fill', seed=3)
  assert sets == build(records=records, num_queries=45, small_subcategories='fill', seed=3)
  assert len({q.product_id for q in sets.queries}) == 45
  eligible = {q.product_id for q in sets.queries if q.subcategory in (0, 1, 2)}
  assert len(eligible) == 37  # every eligible product is a query, then 8 others
  filled = [q for q in sets.queries if q.filled]
  assert len(filled) == 8 == sets.counts['num_filled_queries']
  for query in sets.queries:
    others = [p for p in query.candidate_product_ids if p != query.product_id]
    assert len(set(query.candidate_product_ids)) == NUM_CANDIDATES
    assert query.candidate_record_ids[query.partner_position] == query.record_id
    same_sub = [p for p in others if by_id[p].subcategory == query.subcategory]
    same_main = [
        p
        for p in others
        if by_id[p].subcategory != query.subcategory and by_id[p].category == query.category
    ]
    rest = [p for p in others if by_id[p].category != query.category]
    assert query.candidates_from == (len(same_sub), len(same_main), len(rest))
    if query.subcategory == 3:  # 8 others of its sub-category, 1 of sub-category 2
      assert query.candidates_from == (8, 1, 0)
    if query.subcategory == 4:  # 1 other of its sub-category, none of its main category
      assert query.candidates_from == (1, 0, 8)
  assert sets.counts['filled_candidates_from'] == {
      level: sum(q.candidates_from[i] for q in filled) for i, level in enumerate(rs.FILL_LEVELS)
  }
  assert build(records=records, num_queries=45, small_subcategories='fill', seed=4) != sets


def test_fill_needs_as_many_products_as_candidates_and_queries():
  with pytest.raises(rs.RetrievalSetsError, match='Only 48 products.*49 candidates'):
    build(num_candidates=49, small_subcategories='fill')
  with pytest.raises(rs.RetrievalSetsError, match='Only 48 products.*49 queries'):
    build(num_queries=49, small_subcategories='fill')


def test_files_of_the_older_rule_are_not_reused(tmp_path):
  path = str(tmp_path / 'sets.json')
  options = dict(num_queries=NUM_QUERIES, num_candidates=NUM_CANDIDATES, seed=4)
  rs.load_or_build(path, make_records(), **options)
  with open(path) as f:
    stored = json.load(f)
  assert stored['format_version'] == 2 and stored['params']['small_subcategories'] == 'skip'
  with pytest.raises(rs.RetrievalSetsError, match='small_subcategories: file .skip., requested'):
    rs.load_or_build(path, make_records(), small_subcategories='fill', **options)
  stored['format_version'] = 1  # as written before the fill rule
  with open(path, 'w') as f:
    json.dump(stored, f)
  with pytest.raises(rs.RetrievalSetsError, match='older rule'):
    rs.load_or_build(path, make_records(), **options)
