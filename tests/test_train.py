"""Training: sharded step equivalence, preemption, kill -9 resume, multi-process, learning."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mvlt_jax import checkpoint as checkpoint_lib
from mvlt_jax import optim, steps
from mvlt_jax.masking import TokenSpec
from mvlt_jax.models import build_model
from mvlt_jax.train_state import create_train_state
from tests.conftest import tiny_config
from tests.train_runs import REPO, TOTAL_STEPS
from tests.train_runs import env as _env
from tests.train_runs import run_files as _run_files
from tests.train_runs import train_cmd as _train_cmd


def _params(workdir):
  variables, step = checkpoint_lib.load_variables(os.path.join(workdir, 'checkpoints'))
  return jax.tree.map(np.asarray, variables), step


def _assert_same_params(a, b, atol=0.0, skip_key_bias=False):
  """Leaf-wise equality within ``atol``.

  ``skip_key_bias`` leaves out the key half of every ``kv`` bias: softmax is invariant to a
  shift shared by all keys, so that bias has a true gradient of 0, and Adam turns the
  rounding noise of differently ordered reductions (other process counts) into steps of the
  size of the learning rate. It changes no output; everything else must still agree.
  """
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for (path, x), y in zip(flat_a, flat_b):
    name = jax.tree_util.keystr(path)
    if skip_key_bias and name.endswith("['kv']['bias']"):
      x, y = x[x.shape[-1] // 2 :], y[y.shape[-1] // 2 :]  # the value half only
    np.testing.assert_allclose(x, y, rtol=0, atol=atol, err_msg=name)


@pytest.fixture(scope='module')
def run_dirs(train_runs):
  return train_runs.dirs


@pytest.fixture(scope='module')
def reference(train_runs):
  """An uninterrupted tiny run (it also prepares the tiny dataset); like the demo, it ends with
  the retrieval table and the picture. Started at the session's start (tests/train_runs.py)."""
  result = train_runs.result('reference')
  assert result['returncode'] == 0, result['stderr'][-3000:]
  workdir = result['workdir']
  params, step = _params(workdir)
  assert step == TOTAL_STEPS
  return dict(workdir=workdir, params=params, stdout=result['stdout'], stderr=result['stderr'])


@pytest.mark.slow
def test_reference_run_logs_and_lowers_loss(reference):
  assert 'parameters: ' in reference['stdout']
  assert os.path.exists(os.path.join(reference['workdir'], 'config.json'))
  assert glob.glob(os.path.join(reference['workdir'], 'events.out.tfevents.*'))
  from tensorboard.backend.event_processing import event_accumulator

  events = event_accumulator.EventAccumulator(
      str(reference['workdir']), size_guidance={'tensors': 0}
  )
  events.Reload()
  losses = [
      float(
          tf_value.tensor_proto.float_val[0]
          if tf_value.tensor_proto.float_val
          else np.frombuffer(tf_value.tensor_proto.tensor_content, np.float32)[0]
      )
      for tf_value in events.Tensors('train/loss')
  ]
  assert len(losses) >= 3
  assert losses[-1] < losses[0]
  assert 'train/reconstruction' in events.Tags()['tensors']
  # The evaluation after training: retrieval table, reconstruction picture and metrics.
  results = os.path.join(reference['workdir'], 'results')
  for name in ('retrieval.json', 'reconstruction.json', 'reconstruction.png'):
    assert os.path.exists(os.path.join(results, name)), name
  assert '| TIR' in reference['stdout'] or 'TIR' in reference['stdout']


def test_predictor_loads_what_training_saved(reference):
  from mvlt_jax.inference import Predictor  # pylint: disable=import-outside-toplevel

  predictor = Predictor.from_checkpoint(os.path.join(reference['workdir'], 'checkpoints'))
  np.testing.assert_array_equal(
      jax.tree.leaves(predictor.variables['params'])[0],
      jax.tree.leaves(reference['params']['params'])[0],
  )
  images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  scores = predictor.itm_scores(images, ['red striped long-sleeve t-shirt', 'black ankle boots'])
  assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
  outputs = predictor.forward(images, predictor.encode(['a dress', 'a bag']))
  assert outputs['mlm_logits'].shape == (2, 16, predictor.config.model.vocab_size)
  assert outputs['reconstruction'].shape == (2, 32, 32, 3)


def test_validation_keeps_the_best_checkpoint(reference):
  """Validation at steps 6 and 12 (tiny_train_config); best_checkpoint holds the lower loss."""
  from mvlt_jax.inference import Predictor  # pylint: disable=import-outside-toplevel

  found = dict(re.findall(r'validation at step (\d+): .*?\bloss=([0-9.]+)', reference['stdout']))
  losses = {int(step): float(loss) for step, loss in found.items()}
  assert sorted(losses) == [6, 12], reference['stdout'][-2000:]
  best_dir = os.path.join(reference['workdir'], 'best_checkpoint')
  kept = sorted(int(d) for d in os.listdir(best_dir) if d.isdigit())
  assert kept == [min(losses, key=losses.get)]
  predictor = Predictor.from_checkpoint(best_dir)
  assert predictor.config.model.text_length == 16
  if kept == [TOTAL_STEPS]:  # the best is the last step: the same parameters as checkpoints/
    np.testing.assert_array_equal(
        jax.tree.leaves(predictor.variables['params'])[0],
        jax.tree.leaves(reference['params']['params'])[0],
    )


def test_text_length_other_than_the_prepared_data_is_a_clear_error(reference, run_dirs):
  from input_pipeline import prepare  # pylint: disable=import-outside-toplevel
  from mvlt_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from mvlt_jax.data import resolve_config  # pylint: disable=import-outside-toplevel
  from tests import tiny_train_config  # pylint: disable=import-outside-toplevel

  config = tiny_train_config.get_config()
  config.dataset.data_dir = str(run_dirs['data'])
  prepared = prepare.load_prepared(config.dataset.name, config.dataset.data_dir)
  assert resolve_config(config, prepared).model.text_length == 16
  config.model.text_length = 24
  with pytest.raises(
      ConfigError,
      match=r'text_length=24 but the dataset synthetic_fashion in '
      r'.* was prepared with text_length=16: prepare it again',
  ):
    resolve_config(config, prepared)


def test_attribute_classes_come_from_the_prepared_data(reference, run_dirs):
  import types  # pylint: disable=import-outside-toplevel
  from input_pipeline import prepare  # pylint: disable=import-outside-toplevel
  from mvlt_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from mvlt_jax.data import resolve_config  # pylint: disable=import-outside-toplevel
  from tests import tiny_train_config  # pylint: disable=import-outside-toplevel

  config = tiny_train_config.get_config()
  config.dataset.data_dir = str(run_dirs['data'])
  assert 'attributes' in config.model.heads
  prepared = prepare.load_prepared(config.dataset.name, config.dataset.data_dir)
  assert resolve_config(config, prepared).model.attribute_classes == (16, 6)  # colour, pattern
  config.model.attribute_classes = (16, 5)
  with pytest.raises(ConfigError, match=r'attribute_classes=\(16, 5\) but .* has \(16, 6\)'):
    resolve_config(config, prepared)
  # A dataset without attribute labels (an older synthetic_fashion, Fashion-Gen, a catalog).
  info = prepared.builder.info
  without = types.SimpleNamespace(
      tokenizer=prepared.tokenizer,
      builder=types.SimpleNamespace(
          info=types.SimpleNamespace(
              features=info.features, metadata={**info.metadata, 'attributes': {}}
          )
      ),
  )
  config.model.attribute_classes = ()
  with pytest.raises(ConfigError, match=r'has no attribute labels.*prepare it again'):
    resolve_config(config, without)


@pytest.fixture
def interrupted_run(train_runs, how):
  """test_interrupted_run_resumes_to_same_parameters[how]'s runs (tests/train_runs.py)."""
  return train_runs.result(f'interrupted_{how}')


@pytest.mark.slow
@pytest.mark.parametrize('how', ['kill9', 'sigterm', 'sigint'])
def test_interrupted_run_resumes_to_same_parameters(reference, how, interrupted_run):
  # The first run was slowed down a little so that it was interrupted mid-run, not at its
  # end, with the evaluation after training on: a preempted run must skip it. ``stopped``:
  # the workdir as it left it (a copy, where the workdir was resumed afterwards).
  first, stopped = interrupted_run['first'], interrupted_run['stopped']
  returncode, stdout, stderr = first['returncode'], first['stdout'], first['stderr']
  sent = {'kill9': signal.SIGKILL, 'sigterm': signal.SIGTERM, 'sigint': signal.SIGINT}[how]
  if how == 'kill9':
    assert returncode == -signal.SIGKILL
  else:
    # Saved, stopped, not evaluated, and an exit status that says "unfinished": 128 + signal.
    assert returncode == 128 + sent, stderr[-3000:]
    assert 'Preempted: checkpoint saved at step' in stdout
    assert 'Traceback' not in stderr and 'stopped: ' in stderr
    assert not os.path.exists(os.path.join(stopped, 'results'))
  _, stopped_at = _params(stopped)
  assert 0 < stopped_at < TOTAL_STEPS
  if how == 'sigint':
    return  # the stop is SIGTERM's (same code path); the resume is tested by the other two
  result = interrupted_run['resumed']
  assert result['returncode'] == 0, result['stderr'][-3000:]
  assert 'Resuming from step' in result['stdout']
  params, step = _params(interrupted_run['workdir'])
  assert step == TOTAL_STEPS
  _assert_same_params(params, reference['params'])


@pytest.fixture(scope='module')
def other_model_run(train_runs):
  """A copy of the reference run resumed with another model (tests/train_runs.py)."""
  return train_runs.result('other_model')


@pytest.mark.slow
def test_resuming_with_another_model_is_refused_and_changes_nothing(reference, other_model_run):
  result = other_model_run
  assert result['returncode'] == 1
  assert 'Traceback' not in result['stderr']
  error = result['stderr'].strip().splitlines()[-1]
  assert error.startswith('error: ') and 'holds another model' in error
  assert 'model.text_width=32 there, 48 here' in error
  # config.json, tokenizer and steps untouched
  assert _run_files(result['workdir']) == result['before']


@pytest.fixture(scope='module')
def damaged_run(train_runs):
  """A copy of the reference run whose last step was damaged, resumed (tests/train_runs.py)."""
  return train_runs.result('damaged')


@pytest.mark.slow
def test_damaged_latest_checkpoint_resumes_from_the_step_before(reference, damaged_run):
  # Readable before: the damaged workdir is a copy of the reference's, whose last step was
  # then truncated (its largest data file) beside a stale temporary folder.
  assert checkpoint_lib.parameter_shapes(
      os.path.join(reference['workdir'], 'checkpoints'), TOTAL_STEPS
  )
  result, workdir = damaged_run, damaged_run['workdir']
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert result['returncode'] == 0, result['stderr'][-3000:]
  before = TOTAL_STEPS - 3  # checkpoint_every = 3
  assert f'warning: checkpoint step {TOTAL_STEPS} does not restore' in result['stdout']
  assert f'Resuming from step {before}' in result['stdout']
  # The damaged step is kept aside, not deleted; the stale temporary folder is gone.
  aside = os.listdir(os.path.join(workdir, checkpoint_lib.UNREADABLE_DIR))
  assert len(aside) == 1 and aside[0].startswith(f'{TOTAL_STEPS}-')
  assert not glob.glob(os.path.join(checkpoints, '*orbax-checkpoint-tmp*'))
  params, step = _params(workdir)
  assert step == TOTAL_STEPS
  _assert_same_params(params, reference['params'])


@pytest.mark.slow
def test_two_processes_match_one_process(reference, run_dirs):
  workdir = run_dirs['root'] / 'two_processes'
  env = _env(run_dirs['cache'])
  port = 20000 + os.getpid() % 20000
  procs = [
      subprocess.Popen(
          _train_cmd(
              workdir,
              run_dirs['data'],
              f'--config.distributed.coordinator_address=localhost:{port}',
              '--config.distributed.num_processes=2',
              f'--config.distributed.process_id={i}',
          ),
          cwd=REPO,
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
      )
      for i in range(2)
  ]
  for proc in procs:
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
  params, step = _params(workdir)
  assert step == TOTAL_STEPS
  _assert_same_params(params, reference['params'], atol=2e-5, skip_key_bias=True)


@pytest.fixture(scope='module')
def sharded_check_run(train_runs):
  """``python -m tests.sharded_check`` over 8 host devices (tests/train_runs.py)."""
  return train_runs.result('sharded_check')


@pytest.mark.slow
def test_sharded_step_on_8_devices_equals_single_device(sharded_check_run):
  result = sharded_check_run
  assert result['returncode'] == 0, result['stderr'][-3000:]
  assert 'sharded ok: fsdp 2' in result['stdout']
  assert "P('fsdp', None)" in result['stdout']  # fsdp=2 really shards the parameters


@pytest.mark.slow
def test_global_batch_must_divide_over_devices(run_dirs):
  code = textwrap.dedent("""
      import jax
      from mvlt_jax import sharding
      from tests.conftest import tiny_config
      mesh = sharding.make_mesh(tiny_config().mesh)
      try:
        sharding.check_global_batch(12, mesh)
      except ValueError as e:
        print('error:', e)
  """)
  result = subprocess.run(
      [sys.executable, '-c', code],
      cwd=REPO,
      env=_env(run_dirs['cache'], devices=8),
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert 'global_batch_size=12 does not divide over the 8 devices' in result.stdout


def test_train_step_lowers_every_loss_on_a_fixed_batch():
  config = tiny_config()
  config.model.image_size = config.model.pos_grid_size = 32
  config.optimizer.base_learning_rate = 5e-4
  config.optimizer.base_batch_size = 8
  config.optimizer.warmup_epochs = 0.0
  config.model.drop_path_rate = 0.0
  config.model.text_dropout_rate = 0.0
  # With the release's init (near-uniform attention at std 0.02) ITM needs far more than 100
  # steps from scratch; the demo's livelier attention lets this short run show every loss
  # falling.
  config.model.attention_init_std = 0.1
  model = build_model(config.model)
  schedule = optim.learning_rate_schedule(config.optimizer, 8, 100, 1000)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  state = jax.jit(lambda: create_train_state(model, config, optimizer))()
  step_fn = jax.jit(
      steps.make_train_step(model, config, TokenSpec(64, (0, 1, 2, 3, 4), 4), optimizer, schedule),
      donate_argnums=(0,),
  )
  rng = np.random.default_rng(0)
  batch = dict(
      images=jnp.asarray(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)),
      input_ids=jnp.asarray(rng.integers(5, 64, (8, 16)).astype(np.int32)),
      itm_labels=jnp.asarray(np.array([0, 1] * 4, np.int32)),
  )
  eval_fn = jax.jit(
      steps.make_eval_step(model, config, TokenSpec(64, (0, 1, 2, 3, 4), 4), release_metrics=True)
  )
  eval_rng = jax.random.key(7)
  before = jax.device_get(eval_fn(state.variables, batch, eval_rng))
  assert set(before) == {
      'loss',
      'loss_mir',
      'loss_itm',
      'loss_mlm',
      'itm_accuracy',
      'mlm_accuracy',
      'clean_mlm_accuracy',
      'clean_itm_accuracy',
      'release_score',
  }
  assert set(before) == steps.eval_metric_names(config.model.heads, release_metrics=True)
  assert 'release_score' not in steps.eval_metric_names(config.model.heads)
  again = jax.device_get(eval_fn(state.variables, batch, eval_rng))
  assert before == again  # no dropout, masks from the given key
  history = []
  for _ in range(100):
    state, metrics = step_fn(state, batch)
    history.append(jax.device_get(metrics))
  # MLM on random tokens falls slowest: at the release's init the words are ~2% of the text
  # input (word table std 0.02 beside N(0, 1) position and type tables).
  for key, factor in (('loss_mir', 0.8), ('loss_itm', 0.8), ('loss_mlm', 0.95), ('loss', 0.8)):
    first = np.mean([h[key] for h in history[:10]])
    last = np.mean([h[key] for h in history[-10:]])
    assert last < factor * first, (key, first, last)
  assert int(state.step) == 100
  after = jax.device_get(eval_fn(state.variables, batch, eval_rng))
  assert after['loss'] < 0.8 * before['loss'], (before, after)
  assert after['itm_accuracy'] >= 0.75, after  # 8 pairs seen 100 times
  # The release's best-checkpoint score: clean-image MLM accuracy + clean-pair ITM accuracy.
  assert after['clean_itm_accuracy'] >= 0.75, after
  assert after['clean_mlm_accuracy'] > before['clean_mlm_accuracy'], (before, after)
  np.testing.assert_allclose(
      after['release_score'], after['clean_mlm_accuracy'] + after['clean_itm_accuracy'], rtol=1e-6
  )


def test_non_finite_loss_names_the_step_and_the_losses():
  from mvlt_jax.errors import NonFiniteLossError  # pylint: disable=import-outside-toplevel
  from mvlt_jax.train import check_finite  # pylint: disable=import-outside-toplevel

  check_finite(7, {'loss': 1.0, 'loss_mir': 0.5, 'grad_norm': float('inf')})  # not a loss
  with pytest.raises(NonFiniteLossError, match=r'step 42: .*loss=nan.*loss_itm=0.5'):
    check_finite(42, {'loss': float('nan'), 'loss_itm': 0.5})
  with pytest.raises(NonFiniteLossError, match='step 3'):
    check_finite(3, {'loss_mlm': float('inf')})


# ----------------------------------------------------------------------------- your own catalog


@pytest.fixture(scope='module')
def own_catalog_run(train_runs):
  """The four commands of README "Your own catalog" (tests/train_runs.py)."""
  return train_runs.result('own_catalog')


@pytest.mark.slow
def test_own_catalog_readme_recipe(reference, own_catalog_run):
  """README "Your own catalog", as written: prepare with the checkpoint's tokenizer, fine-tune
  from it (the class heads fresh), evaluate without dataset flags, search; paths swapped for
  temporary ones, the demo config for the tiny one the reference run trained, a few steps."""
  root, records = own_catalog_run['root'], own_catalog_run['records']
  assert (len(records['train']), len(records['validation'])) == (48, 16)
  commands = own_catalog_run['commands']
  assert len(commands) == 4, commands
  outputs = []
  for result in own_catalog_run['results']:  # up to the first that failed
    assert result['returncode'] == 0, (result['command'], result['stderr'][-3000:])
    assert 'Traceback' not in result['stderr']
    outputs.append(result['stdout'])
  prepared, trained, evaluated, searched = outputs
  assert 'from the checkpoint' in prepared
  assert 'loaded ' in trained and 'fresh (shape differs' in trained  # the class heads
  assert '| TIR' in evaluated
  with open(root / 'work' / 'results' / 'retrieval.json') as f:
    assert json.load(f)['dataset'] == 'catalog'
  assert 'rank' in searched and os.path.getsize(root / 'work' / 'search.html') > 1000
