"""The evaluation tasks (mvlt_jax.evaluators) on a tiny prepared dataset and a random tiny model.

The dataset is the pipeline's contract dataset: record ``i`` of the validation split is
product ``i // VIEWS``, its (lossless) image encodes ``i`` in its pixels and its caption
starts with ``[CLS] 1000 + product``, so an "oracle" scorer can tell matching pairs apart
and the tests can check that every row reaches the right record.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mvlt_jax import checkpoint, evaluators
from mvlt_jax.errors import MVLTError
from mvlt_jax.evaluators import common, reconstruction, retrieval
from mvlt_jax.models import build_model
from tests import conftest
from tests.conftest import tiny_config
from tests.prepare_test_data import write_bert_vocab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = 'contract_eval'
VIEWS = 2
NUM_RECORDS = 48  # 24 products, 12 per sub-category
IMAGE_SIZE = 64
TEXT_LENGTH = 16
VOCAB_SIZE = 30522  # the contract dataset draws caption ids up to BERT's vocabulary
FIRST_WORD_ID = 1000
NUM_QUERIES = 8
NUM_CANDIDATES = 5
NUM_PICTURES = 4
PICTURE_GAP = 4  # reconstruction.labelled_picture


# ----------------------------------------------------------------------------- processes


def stack_trees(trees):
  return {
      key: (
          stack_trees([t[key] for t in trees])
          if isinstance(trees[0][key], dict)
          else np.stack([t[key] for t in trees])
      )
      for key in trees[0]
  }


def gather_in_simulated_processes(locals_and_valid, capacity):
  """Runs gather_results in one thread per simulated process, with a barrier allgather."""
  count = len(locals_and_valid)
  barrier = threading.Barrier(count)
  deposits, results = [None] * count, [None] * count

  def run(p):
    def allgather(tree):
      deposits[p] = tree
      barrier.wait()
      return stack_trees(deposits)

    local, valid = locals_and_valid[p]
    results[p] = common.gather_results(local, valid, capacity, allgather=allgather)

  threads = [threading.Thread(target=run, args=(p,)) for p in range(count)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=30)
  return results


@pytest.mark.parametrize('num_items', [0, 1, 5, 7, 12])
@pytest.mark.parametrize('process_count', [1, 2, 3, 5])
def test_shares_cover_every_item_once_and_gather_in_order(num_items, process_count):
  shares = [common.process_slice(num_items, p, process_count) for p in range(process_count)]
  covered = np.concatenate([np.arange(s.start, s.stop) for s in shares])
  np.testing.assert_array_equal(covered, np.arange(num_items))
  sizes = [s.stop - s.start for s in shares]
  capacity = common.process_capacity(num_items, process_count)
  assert max(sizes) == capacity and max(sizes) - min(sizes) <= 1
  locals_and_valid = []
  for share in shares:
    items = np.arange(share.start, share.stop)
    local = {
        'item': items,
        'square': (items**2).astype(np.float32),
        'vector': np.stack([items, -items], axis=1),
    }
    locals_and_valid.append((local, np.ones(len(items), bool)))
  for result in gather_in_simulated_processes(locals_and_valid, capacity):
    np.testing.assert_array_equal(result['item'], np.arange(num_items))
    np.testing.assert_array_equal(result['square'], np.arange(num_items) ** 2)
    assert result['vector'].shape == (num_items, 2)


def test_gather_drops_invalid_rows():
  local_a = {'item': np.array([0, 1, 99])}
  local_b = {'item': np.array([2, 98, 97])}
  results = gather_in_simulated_processes(
      [(local_a, np.array([True, True, False])), (local_b, np.array([True, False, False]))], 3
  )
  for result in results:
    np.testing.assert_array_equal(result['item'], [0, 1, 2])
  with pytest.raises(ValueError, match='rows'):
    common.gather_results({'item': np.arange(3)}, np.ones(2, bool), 3)


_TWO_PROCESS_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import numpy as np
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    process_id, port = int(sys.argv[1]), sys.argv[2]
    jax.distributed.initialize(f'localhost:{port}', num_processes=2, process_id=process_id)
    from mvlt_jax.evaluators import common
    share = common.process_slice(7, jax.process_index(), jax.process_count())
    items = np.arange(share.start, share.stop)
    result = common.gather_results({'item': items, 'value': items * 10.0},
                                   np.ones(len(items), bool), common.process_capacity(7, 2))
    print('RESULT ' + json.dumps({k: v.tolist() for k, v in result.items()}), flush=True)
    jax.distributed.shutdown()
""")


@pytest.mark.slow
def test_gather_across_two_real_processes_with_uneven_shares():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  processes = [
      subprocess.Popen(
          [sys.executable, '-c', _TWO_PROCESS_SCRIPT, str(p), str(port)],
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
          env=env,
          cwd=REPO,
      )
      for p in range(2)
  ]
  outputs = [p.communicate(timeout=180) for p in processes]
  for process, (stdout, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-3000:]
    line = [l for l in stdout.splitlines() if l.startswith('RESULT ')][0]
    result = json.loads(line[len('RESULT ') :])
    assert result['item'] == list(range(7))  # shares of 4 and 3, each item once, in order
    assert result['value'] == [10.0 * i for i in range(7)]


# ----------------------------------------------------------------------------- fixtures


def random_variables(model, seed=0):
  return conftest.random_variables(model, IMAGE_SIZE, TEXT_LENGTH, seed)


def eval_config(data_dir, checkpoint_dir):
  config = tiny_config(heads=('mlm', 'itm', 'mir', 'recognition'))
  m = config.model
  m.vocab_size = VOCAB_SIZE
  m.text_length = TEXT_LENGTH
  m.num_main_classes = 2
  m.num_sub_classes = 2
  config.dataset.name = NAME
  config.dataset.data_dir = data_dir
  config.dataset.auto_prepare = False
  config.checkpoint = checkpoint_dir
  e = config.eval
  e.num_queries = NUM_QUERIES
  e.num_candidates = NUM_CANDIDATES
  e.queries_per_step = 2
  e.resamples = 2
  e.batch_size = 16
  e.num_pictures = NUM_PICTURES
  e.full_gallery = True
  e.full_gallery_queries = 0  # every product
  e.first_stage_top_k = 6
  e.prefetch = 2
  e.num_workers = 2
  return config


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  from input_pipeline import tokenizer as tok
  from tests.contract_dataset import write_contract_dataset

  root = tmp_path_factory.mktemp('evaluate')
  data_dir = str(root / 'data')
  write_contract_dataset(
      data_dir,
      NAME,
      split_sizes={'train': 4, 'validation': NUM_RECORDS},
      views_per_product=VIEWS,
      num_categories=2,
      subcategories_per_category=1,
      image_size=IMAGE_SIZE,
      text_length=TEXT_LENGTH,
      image_encoding='png',
      marked_images=True,
  )
  vocab = str(root / 'vocab.txt')
  write_bert_vocab(vocab, words=['red', 'shirt'])
  tokenizer_dir = str(root / 'tokenizer')
  tok.WordPieceTokenizer.from_vocab_file(vocab).save(tokenizer_dir)
  checkpoint_dir = str(root / 'checkpoint')
  config = eval_config(data_dir, checkpoint_dir)
  variables = random_variables(build_model(config.model))
  checkpoint.save_variables(checkpoint_dir, variables, config, tokenizer_dir=tokenizer_dir)
  workdir = str(root / 'workdir')
  demo = evaluators.run_demo_evaluation(config, workdir)
  recognition = evaluators.eval_recognition(config, workdir)
  return dict(
      config=config,
      workdir=workdir,
      data_dir=data_dir,
      root=root,
      checkpoint=checkpoint_dir,
      retrieval=demo['retrieval'],
      reconstruction=demo['reconstruction'],
      recognition=recognition,
  )


@pytest.fixture(scope='module')
def parts(setup):
  """The pieces the tasks are made of, for runs with controlled scorers."""
  from input_pipeline import pipeline

  loaded = common.load_checkpoint(setup['checkpoint'], ('itm',))
  data = common.open_eval_split(setup['config'], loaded)
  metadata = pipeline.read_metadata(data.data_dir, data.name, data.split)
  view = pipeline.SplitView(
      data.data_dir, data.name, data.split, image_size=IMAGE_SIZE, metadata=metadata
  )
  runner = common.LocalRunner(loaded.variables)
  yield dict(loaded=loaded, data=data, metadata=metadata, view=view, runner=runner)
  view.close()


def record_of_image(images):
  """The record index marked in contract images: uint8 [..., S, S, 3] -> int [...]."""
  images = jnp.asarray(images).astype(jnp.int32)
  return images[..., 0, 0, 0] + 256 * images[..., 0, 0, 1]


def oracle_scorer(sign=1.0):
  """Log-odds +sign for a matching pair (same product), 0 otherwise."""

  @jax.jit
  def score(variables, images, input_ids):
    del variables
    matched = record_of_image(images) // VIEWS == input_ids[:, 1] - FIRST_WORD_ID
    return sign * matched.astype(jnp.float32)

  return score


def read_json(workdir, name):
  with open(os.path.join(workdir, 'results', name)) as f:
    return json.load(f)


# ----------------------------------------------------------------------------- retrieval


def test_retrieval_json(setup):
  result = read_json(setup['workdir'], 'retrieval.json')
  assert result['queries'] == NUM_QUERIES and result['candidates'] == NUM_CANDIDATES
  assert result['seeds'] == [0, 1] and result['step'] == 0
  assert result['pairs_scored'] == 2 * 2 * NUM_QUERIES * NUM_CANDIDATES
  for direction in ('tir', 'itr'):
    assert set(result[direction]) == {'r1', 'r5', 'r10'}
    assert 0.0 <= result[direction]['r1'] <= 1.0
    # 5 candidates: every partner ranks <= 5, so R@5 and R@10 are not applicable (not 100 %).
    assert result[direction]['r5'] is None and result[direction]['r10'] is None
    for entry in result['per_resample']:
      ranks = entry[f'{direction}_ranks']
      assert len(ranks) == NUM_QUERIES and all(1 <= r <= NUM_CANDIDATES for r in ranks)
      assert entry[direction]['r1'] == np.mean(np.array(ranks) == 1)
    r1 = [e[direction]['r1'] for e in result['per_resample']]
    assert result[direction]['r1'] == pytest.approx(np.mean(r1))
    assert result[f'{direction}_std']['r1'] == pytest.approx(np.std(r1, ddof=1))
  assert result['directions']['tir'] == {
      'name': 'TIR',
      'direction': 'text -> image',
      'query': 'caption',
      'candidates': 'images',
  }
  assert result['directions']['itr'] == {
      'name': 'ITR',
      'direction': 'image -> text',
      'query': 'image',
      'candidates': 'captions',
  }
  for entry in result['per_resample']:
    assert os.path.exists(entry['sets_file'])
    assert os.path.dirname(entry['sets_file']) == os.path.join(
        setup['data_dir'], NAME, 'retrieval_sets'
    )


def test_retrieval_report_names_the_directions(setup):
  result = read_json(setup['workdir'], 'retrieval.json')
  for with_paper in (False, True):
    text = retrieval.format_retrieval(result, with_paper)
    table_rows = [line for line in text.splitlines() if line.startswith('| ')]
    assert any(row.startswith('| TIR (text -> image) |') for row in table_rows)
    assert any(row.startswith('| ITR (image -> text) |') for row in table_rows)
    assert 'the query is a caption, ranked against candidate images' in text
    assert 'the query is an image, ranked against candidate captions' in text
  assert 'TIR (text -> image)' in retrieval.format_retrieval(setup['retrieval'], False)


def test_candidate_sets_are_reused(setup, parts):
  from input_pipeline import retrieval_sets as rs

  records = rs.records_from_metadata(parts['metadata'])
  sets, path = retrieval.load_retrieval_sets(setup['config'], parts['data'], records, seed=0)
  assert sets == rs.load(path)
  with open(path) as f:
    stored = json.load(f)
  assert stored['params']['seed'] == 0 and len(stored['queries']) == NUM_QUERIES


def test_full_gallery_json(setup):
  gallery = read_json(setup['workdir'], 'retrieval.json')['full_gallery']
  assert gallery['gallery'] == NUM_RECORDS // VIEWS and gallery['queries'] == NUM_RECORDS // VIEWS
  assert gallery['cost']['cross_encoder_pairs'] == 2 * gallery['queries'] * 6
  assert gallery['cost']['unimodal_passes'] == 2 * gallery['gallery']
  for direction in ('tir', 'itr'):
    ranks = np.array([np.inf if r is None else r for r in gallery[f'{direction}_ranks']])
    hits = np.isfinite(ranks)
    assert gallery[direction]['first_stage_recall'] == pytest.approx(hits.mean())
    assert np.all(ranks[hits] <= 6)


def _run_protocol(setup, parts, scorer, **overrides):
  config = setup['config'].copy_and_resolve_references()
  config.eval.update(overrides)
  return retrieval.retrieval_protocol(
      config,
      parts['loaded'],
      parts['data'],
      parts['runner'],
      scorer,
      parts['view'],
      parts['metadata'],
  )


def test_oracle_ranks_every_partner_first(setup, parts):
  result = _run_protocol(setup, parts, oracle_scorer(), resamples=1)
  for direction in ('tir', 'itr'):
    assert result[direction] == {'r1': 1.0, 'r5': None, 'r10': None}  # 5 candidates
    assert result['per_resample'][0][direction]['tied_queries'] == 0


def test_ties_rank_pessimistically(setup, parts):
  constant = jax.jit(lambda variables, images, input_ids: jnp.zeros(len(images)))
  result = _run_protocol(setup, parts, constant, resamples=1, queries_per_step=3)
  entry = result['per_resample'][0]
  for direction in ('tir', 'itr'):
    assert entry[f'{direction}_ranks'] == [NUM_CANDIDATES] * NUM_QUERIES
    assert entry[direction]['tied_queries'] == NUM_QUERIES
  # The reverse oracle puts the partner last, without ties.
  result = _run_protocol(setup, parts, oracle_scorer(-1.0), resamples=1)
  assert result['per_resample'][0]['itr_ranks'] == [NUM_CANDIDATES] * NUM_QUERIES
  assert result['per_resample'][0]['itr']['tied_queries'] == 0


def _run_gallery(setup, parts, scorer, **overrides):
  config = setup['config'].copy_and_resolve_references()
  config.eval.update(overrides)
  return retrieval.full_gallery_retrieval(
      config,
      parts['loaded'],
      parts['data'],
      parts['runner'],
      scorer,
      parts['view'],
      parts['metadata'],
  )


def test_full_gallery_with_an_oracle(setup, parts):
  exhaustive = _run_gallery(setup, parts, oracle_scorer(), first_stage='none')
  assert exhaustive['top_k'] == NUM_RECORDS // VIEWS
  for direction in ('tir', 'itr'):
    assert exhaustive[direction]['r1'] == 1.0
    assert exhaustive[direction]['first_stage_recall'] == 1.0
  two_stage = _run_gallery(
      setup,
      parts,
      oracle_scorer(),
      first_stage='pooled_features',
      first_stage_top_k=4,
      full_gallery_queries=10,
  )
  assert two_stage['queries'] == 10 and two_stage['cost']['cross_encoder_pairs'] == 2 * 10 * 4
  for direction in ('tir', 'itr'):  # the oracle finds the partner iff stage 1 kept it
    assert two_stage[direction]['r1'] == two_stage[direction]['first_stage_recall']


def test_full_gallery_ranks_are_never_better_than_among_candidates(setup, parts):
  """The gallery holds every candidate of the paper protocol (same views), so the true
  partner cannot rank better against the whole gallery than against its candidates."""
  scorer = retrieval.make_itm_scorer(parts['loaded'].model(('itm',), 'float32'))
  gallery = _run_gallery(setup, parts, scorer, first_stage='none')
  protocol = read_json(setup['workdir'], 'retrieval.json')['per_resample'][0]
  with open(protocol['sets_file']) as f:
    query_records = [q['record_id'] for q in json.load(f)['queries']]
  position = {record: i for i, record in enumerate(gallery['query_record_ids'])}
  for direction in ('tir', 'itr'):
    for record, rank in zip(query_records, protocol[f'{direction}_ranks']):
      assert gallery[f'{direction}_ranks'][position[record]] >= rank


# ----------------------------------------------------------------------------- small catalogs


def parse_main_flags(monkeypatch, *arguments):
  """main.py's ``--config`` flag parsed from ``arguments``, standing in for absl's FLAGS (as
  main.py leaves them): returns the config main.py would run."""
  from absl import flags
  from ml_collections import config_flags

  argv = ['main.py', *arguments]
  flag_values = flags.FlagValues()
  flags.DEFINE_string('workdir', None, 'As main.py.', flag_values=flag_values)
  config_flags.DEFINE_config_file(
      'config',
      None,
      'A configs/*.py file.',
      flag_values=flag_values,
      lock_config=True,
      sys_argv=argv,
  )
  flag_values(argv)
  monkeypatch.setattr(flags, 'FLAGS', flag_values)
  return flag_values.config


def test_readme_evaluation_takes_the_dataset_from_the_checkpoint(
    setup, monkeypatch, tmp_path, capsys
):
  """The README's command, with configs/pretrain.py (fashion_gen in ./data, WordPiece without
  a vocab_file): the dataset is the checkpoint's. Its sub-categories (12 products) are too
  small for 20 candidates: filled, counted in the JSON and the table."""
  monkeypatch.chdir(tmp_path)  # no ./data here: pretrain.py's dataset cannot be what runs
  workdir = str(tmp_path / 'eval')
  config = parse_main_flags(
      monkeypatch,
      f'--config={os.path.join(REPO, "configs", "pretrain.py")}',
      '--config.task=eval_retrieval',
      f'--config.checkpoint={setup["checkpoint"]}',
      f'--workdir={workdir}',
      '--config.eval.num_queries=8',
      '--config.eval.num_candidates=20',
  )
  result = evaluators.eval_retrieval(config, workdir)
  out = capsys.readouterr().out
  assert result['dataset'] == NAME and result['data_dir'] == setup['data_dir']
  assert result['dataset_source'] == {
      'config_file': os.path.join(setup['checkpoint'], 'config.json'),
      'given': [],
  }
  stored = read_json(workdir, 'retrieval.json')
  # 12 products per sub-category (one sub-category per main category): each query has its
  # 11 others, then 8 of the other main category's products.
  assert stored['fill']['queries_per_draw'] == [NUM_QUERIES]
  assert stored['fill']['candidates_from'] == {
      'subcategory': 11 * NUM_QUERIES,
      'category': 0,
      'catalog': 8 * NUM_QUERIES,
  }
  assert stored['per_resample'][0]['filled_queries'] == NUM_QUERIES
  assert stored['per_resample'][0]['sets_file'].endswith('_v2.json')
  with open(stored['per_resample'][0]['sets_file']) as f:
    sets = json.load(f)
  assert sets['params']['small_subcategories'] == 'fill' and sets['format_version'] == 2
  for query in sets['queries']:
    assert len(set(query['candidate_product_ids'])) == 20
  assert stored['tir']['r10'] is not None  # 20 candidates: R@10 applies
  assert (
      'Fill rule: 8 of 8 queries have fewer than 20 products in their sub-category; their 152 '
      'other candidates: 88 same sub-category, 0 same main category, 64 rest of the split'
  ) in out
  # The command after training names the config file and repeats the eval settings.
  command = common.hand_command(config, workdir, 'eval_retrieval', {'eval.num_candidates': 24})
  assert f'--config={os.path.join(REPO, "configs", "pretrain.py")}' in command
  assert '--config.eval.num_queries=8 --config.eval.num_candidates=24' in command


def test_dataset_fields_given_explicitly_win(setup, parts, monkeypatch, tmp_path):
  loaded = parts['loaded']
  config = tiny_config()  # fashion_gen in ./data: none of it is the checkpoint's
  config.dataset.eval_split = 'train'
  config.dataset.data_dir = 'elsewhere'
  merged, source = common.evaluation_config(config, loaded, given=['dataset.eval_split', 'task'])
  assert merged.dataset.eval_split == 'train'  # given
  assert merged.dataset.name == NAME and merged.dataset.data_dir == setup['data_dir']
  assert source['given'] == ['eval_split']
  # A config built in Python (not main.py's flag) keeps its dataset.
  assert common.evaluation_config(config, loaded)[0].dataset.data_dir == 'elsewhere'
  # A relative data_dir of the checkpoint is relative to where training ran.
  saved = loaded.dataset_config.copy_and_resolve_references()
  saved.data_dir = 'data'
  relative = dataclasses.replace(loaded, dataset_config=saved)
  merged, source = common.evaluation_config(config, relative, given=[])
  monkeypatch.chdir(tmp_path)
  with pytest.raises(common.EvaluationError, match='relative to the directory training ran in'):
    common.open_eval_split(merged, relative, source)
  monkeypatch.chdir(setup['root'])  # where 'data' is
  assert common.open_eval_split(merged, relative, source).num_examples == NUM_RECORDS


def test_split_smaller_than_the_candidates_is_a_clear_error(setup, parts):
  with pytest.raises(
      common.DataTooSmallError, match=r'has 24 products.*lower --config.eval.num_candidates'
  ) as error:
    _run_protocol(setup, parts, oracle_scorer(), num_candidates=30)
  assert error.value.overrides == {'eval.num_candidates': NUM_RECORDS // VIEWS}


def test_full_gallery_runs_whatever_num_candidates(setup, parts):
  config = setup['config'].copy_and_resolve_references()
  config.eval.update(
      num_candidates=101, first_stage='none', full_gallery_queries=6, recall_ks=(1, 5, 24)
  )
  result = retrieval.run_retrieval(config, parts['loaded'], parts['data'], oracle_scorer())
  assert 'has 24 products' in result['protocol_skipped'] and 'tir' not in result
  gallery = result['full_gallery']
  for direction in ('tir', 'itr'):  # R@24 of a gallery of 24 products: not applicable
    assert gallery[direction]['r1'] == 1.0 and gallery[direction]['r24'] is None
  text = retrieval.format_retrieval(result, with_paper=False)
  assert text.startswith("Retrieval on the paper's protocol: skipped: ")
  assert '| TIR (text -> image) | 100.0 | 100.0 | n/a | 100.0 |' in text
  assert 'n/a: R@K with K >= the 24 products of the gallery' in text


def test_evaluation_after_training_never_fails_the_run(setup, monkeypatch, capsys):
  from mvlt_jax.evaluators import demo

  config = setup['config'].copy_and_resolve_references()
  config.eval.num_candidates = 30  # more than the 24 products of the split
  config.eval.full_gallery = False
  ran = []
  stub = lambda config, workdir: ran.append(workdir) or {'psnr': 1.0}
  monkeypatch.setattr(
      demo, 'DEMO_TASKS', (demo.DEMO_TASKS[0], ('reconstruction', 'reconstruct', stub))
  )
  result = demo.run_demo_evaluation(config, setup['workdir'])
  assert result == {'retrieval': None, 'reconstruction': {'psnr': 1.0}}
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith('evaluation after training: eval_retrieval skipped: ')
  assert 'has 24 products' in lines[0]
  assert (
      f'To run it by hand: python main.py --config=CONFIG --workdir={setup["workdir"]} '
      f'--config.task=eval_retrieval --config.checkpoint={setup["checkpoint"]} '
      '--config.eval.num_candidates=24'
  ) in lines[0]


# ----------------------------------------------------------------------------- split passes


def test_split_pass_reaches_every_record_once(setup, parts):
  config = setup['config'].copy_and_resolve_references()
  config.eval.batch_size = 20  # 3 batches, the last one padded
  config.eval.max_examples = 45

  @jax.jit
  def step(variables, images, input_ids, record_index):
    del variables, input_ids
    return {'echo': record_index, 'marked': record_of_image(images)}

  rows, pictures = common.run_over_split(
      config,
      parts['data'],
      parts['runner'],
      step,
      input_keys=('images', 'input_ids'),
      output_keys=('echo', 'marked'),
      picture_keys=('marked',),
      num_pictures=3,
      vocab_size=VOCAB_SIZE,
  )
  np.testing.assert_array_equal(rows['record_index'], np.arange(45))
  np.testing.assert_array_equal(rows['echo'], np.arange(45))
  np.testing.assert_array_equal(rows['marked'], np.arange(45))
  np.testing.assert_array_equal(pictures['marked'], [0, 1, 2])


def test_masks_depend_on_the_record_only():
  config = tiny_config()
  config.masking.image_distribution = 'exact'  # exactly 50% of the units, checked below
  images = jnp.asarray(np.random.default_rng(0).random((4, 32, 32, 3)), jnp.float32)
  index = jnp.array([5, 9, 2, 7])
  mask = jax.jit(
      lambda x, i: reconstruction.mask_items(x, i, seed=3, masking_config=config.masking)
  )
  masked, cells = mask(images, index)
  order = jnp.array([2, 0, 3, 1])
  masked_again, cells_again = mask(images[order], index[order])
  np.testing.assert_array_equal(cells_again, cells[order])
  np.testing.assert_array_equal(masked_again, masked[order])
  assert np.all(cells.reshape(4, -1).sum(axis=1) == 8)  # 50% of the 4x4 units
  assert len({np.asarray(c).tobytes() for c in cells}) == 4  # records differ
  _, other_seed = jax.jit(
      lambda x, i: reconstruction.mask_items(x, i, seed=4, masking_config=config.masking)
  )(images, index)
  assert not np.array_equal(other_seed, cells)


# ----------------------------------------------------------------------------- recognition


def test_recognition_json(setup):
  result = read_json(setup['workdir'], 'recognition.json')
  assert result['examples'] == NUM_RECORDS
  for level in ('main', 'sub'):
    scores = result[level]
    assert 0.0 <= scores['accuracy'] <= 1.0 and 0.0 <= scores['macro_f1'] <= 1.0
    per_class = scores['per_class']
    assert sum(c['support'] for c in per_class) == NUM_RECORDS
    assert sum(c['predicted'] for c in per_class) == NUM_RECORDS
    correct = sum(round(c['recall'] * c['support']) for c in per_class)
    assert scores['accuracy'] == pytest.approx(correct / NUM_RECORDS)
    assert scores['macro_f1'] == pytest.approx(np.mean([c['f1'] for c in per_class]))
  assert os.path.exists(os.path.join(setup['workdir'], 'results', 'recognition_per_class.md'))


# ----------------------------------------------------------------------------- reconstruction


def test_reconstruction_json_and_picture(setup, parts):
  result = read_json(setup['workdir'], 'reconstruction.json')
  assert result['examples'] == NUM_RECORDS
  assert np.isfinite(result['psnr']) and -1.0 <= result['ssim'] <= 1.0
  # The release's scale (peak 255 on images in [0, 1]): + 20 log10(255) = 48.13 dB.
  assert result['psnr_release_scale'] == result['psnr'] + 20 * math.log10(255)
  assert result['masked_input']['psnr_release_scale'] == result['masked_input'][
      'psnr'
  ] + 20 * math.log10(255)
  assert 'release' in result['psnr_release_scale_note']
  text = reconstruction.format_reconstruction(result)
  header = next(line for line in text.splitlines() if line.startswith('|  | PSNR'))
  assert 'PSNR (dB)' in header and 'PSNR, release scale (dB)' in header
  row = next(line for line in text.splitlines() if line.startswith('| reconstruction |'))
  assert f'| {result["psnr"]:.2f} | {result["psnr_release_scale"]:.2f} |' in row
  assert 'PSNR + 48.13 dB' in text and "only this column compares with the release's" in text
  assert result['mask']['seed'] == 0 and result['picture']['records'] == [0, 1, 2, 3]
  assert result['mask']['unit'] == parts['loaded'].masking_config.image_unit == 8
  picture = np.asarray(Image.open(os.path.join(setup['workdir'], 'results', 'reconstruction.png')))
  # Enlarged to >= eval.picture_cell_pixels (192: 64 px x 3), labels above the columns.
  cell = IMAGE_SIZE * 3
  side = cell + PICTURE_GAP
  header = picture.shape[0] - (NUM_PICTURES * side - PICTURE_GAP)
  assert picture.shape[1] == 3 * side - PICTURE_GAP and 0 < header < 64
  originals = parts['view'].images([f'validation_{i}' for i in range(NUM_PICTURES)])
  for i in range(NUM_PICTURES):
    enlarged = np.repeat(np.repeat(originals[i], 3, axis=0), 3, axis=1)
    top = header + i * side
    np.testing.assert_array_equal(picture[top : top + cell, :cell], enlarged)


# ----------------------------------------------------------------------------- errors


def test_task_needs_its_heads(setup):
  with pytest.raises(common.EvaluationError, match='missing'):
    common.load_checkpoint(setup['checkpoint'], ('itm', 'nonexistent'))


def test_bad_eval_dtype_is_a_clear_error(parts):
  with pytest.raises(MVLTError, match='eval.dtype'):
    parts['loaded'].model(('itm',), 'float64')


def test_text_length_must_match(setup, parts):
  loaded = parts['loaded']
  model_config = loaded.model_config.copy_and_resolve_references()
  model_config.text_length = TEXT_LENGTH * 2
  other = common.LoadedCheckpoint(loaded.path, 0, model_config, {}, None)
  with pytest.raises(common.EvaluationError, match='text_length'):
    common.open_eval_split(setup['config'], other)


def test_token_ids_must_fit_the_vocabulary():
  with pytest.raises(common.EvaluationError, match='vocabulary'):
    common.check_token_ids(np.array([[2, 70]]), 64, 'somewhere')
  common.check_token_ids(np.array([[2, 63]]), 64, 'somewhere')


def test_other_tokenizer_is_refused(tmp_path, parts):
  with open(tmp_path / 'metadata.json', 'w') as f:
    json.dump({'tokenizer': {'fingerprint': 'f' * 64}}, f)
  check = common._check_tokenizer  # pylint: disable=protected-access
  with pytest.raises(common.EvaluationError, match='another tokenizer'):
    check(parts['loaded'], str(tmp_path), 'data')


def test_main_knows_the_tasks():
  from mvlt_jax import config_check  # pylint: disable=import-outside-toplevel

  tasks = config_check.EVALUATION_TASKS
  assert set(tasks) == {'eval_retrieval', 'eval_recognition', 'reconstruct'}
  assert all(callable(getattr(evaluators, task)) for task in tasks)


def test_reconstruction_picture_is_enlarged_and_labelled():
  from mvlt_jax.evaluators.reconstruction import labelled_picture  # pylint: disable=import-outside-toplevel

  columns = [np.full((2, 32, 32, 3), value, np.uint8) for value in (0, 100, 200)]
  picture = labelled_picture(columns, ['original', 'masked input', 'reconstruction'], 192)
  factor = 6  # 32 px -> 192 px, a whole factor
  header = picture.shape[0] - (2 * 32 * factor + 4)
  assert picture.shape[1] == 3 * 32 * factor + 2 * 4
  assert 0 < header < 64
  # Each column holds its images, enlarged; the header above them holds dark label text.
  np.testing.assert_array_equal(picture[header, : 32 * factor], 0)
  np.testing.assert_array_equal(picture[-1, -32 * factor :], 200)
  for c in range(3):
    label_area = picture[:header, c * (32 * factor + 4) : (c + 1) * 32 * factor]
    assert (label_area < 128).any(), c
