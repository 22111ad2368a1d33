"""Training: sharded step equivalence, preemption, kill -9 resume, multi-process, learning."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, 'tests', 'tiny_train_config.py')
TOTAL_STEPS = 12


def _env(cache_dir, devices=1):
  env = dict(os.environ)
  env.update(
      {
          # Identical programs compile once across the runs of this module.
          'JAX_COMPILATION_CACHE_DIR': str(cache_dir),
          'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
          'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
          'XLA_FLAGS': (
              f'--xla_force_host_platform_device_count={devices} '
              '--xla_backend_optimization_level=0'
          ),
          'JAX_PLATFORMS': 'cpu',
          'PYTHONPATH': REPO,
      }
  )
  return env


def _train_cmd(workdir, data_dir, *extra):
  return [
      sys.executable,
      'main.py',
      f'--config={TINY}',
      f'--workdir={workdir}',
      f'--config.dataset.data_dir={data_dir}',
      *extra,
  ]


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
def run_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp('train')
  return dict(root=root, data=root / 'data', cache=root / 'xla_cache')


@pytest.fixture(scope='module')
def reference(run_dirs):
  """An uninterrupted tiny run (it also prepares the tiny dataset)."""
  workdir = run_dirs['root'] / 'reference'
  # Like the demo, the reference run ends with the retrieval table and the picture.
  result = subprocess.run(
      _train_cmd(workdir, run_dirs['data'], '--config.eval_after_training=True'),
      cwd=REPO,
      env=_env(run_dirs['cache']),
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  params, step = _params(workdir)
  assert step == TOTAL_STEPS
  return dict(workdir=workdir, params=params, stdout=result.stdout, stderr=result.stderr)


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


def _wait_for_checkpoint(workdir, proc, timeout=600):
  """Waits until a first checkpoint step directory exists; returns its step."""
  ckpt = os.path.join(workdir, 'checkpoints')
  start = time.time()
  while time.time() - start < timeout:
    if os.path.isdir(ckpt):
      done = [int(d) for d in os.listdir(ckpt) if d.isdigit()]
      if done:
        return min(done)
    if proc.poll() is not None:
      raise AssertionError(f'run ended before its first checkpoint: {proc.stderr.read()[-3000:]}')
    time.sleep(0.01)
  raise AssertionError('no checkpoint appeared')


@pytest.mark.slow
@pytest.mark.parametrize('how', ['kill9', 'sigterm', 'sigint'])
def test_interrupted_run_resumes_to_same_parameters(reference, run_dirs, how):
  workdir = run_dirs['root'] / how
  env = _env(run_dirs['cache'])
  # Slow the first run down a little so that it is interrupted mid-run, not at its end. With
  # the evaluation after training on: a preempted run must skip it.
  slow_cmd = [
      sys.executable,
      '-m',
      'tests.slow_main',
      '0.3',
      *_train_cmd(workdir, run_dirs['data'], '--config.eval_after_training=True')[2:],
  ]
  proc = subprocess.Popen(
      slow_cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  _wait_for_checkpoint(workdir, proc)
  sent = {'kill9': signal.SIGKILL, 'sigterm': signal.SIGTERM, 'sigint': signal.SIGINT}[how]
  proc.send_signal(sent)
  stdout, stderr = proc.communicate(timeout=300)
  if how == 'kill9':
    assert proc.returncode == -signal.SIGKILL
  else:
    # Saved, stopped, not evaluated, and an exit status that says "unfinished": 128 + signal.
    assert proc.returncode == 128 + sent, stderr[-3000:]
    assert 'Preempted: checkpoint saved at step' in stdout
    assert 'Traceback' not in stderr and 'stopped: ' in stderr
    assert not os.path.exists(os.path.join(workdir, 'results'))
  _, stopped_at = _params(workdir)
  assert 0 < stopped_at < TOTAL_STEPS
  if how == 'sigint':
    return  # the stop is SIGTERM's (same code path); the resume is tested by the other two
  result = subprocess.run(
      _train_cmd(workdir, run_dirs['data']),
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resuming from step' in result.stdout
  params, step = _params(workdir)
  assert step == TOTAL_STEPS
  _assert_same_params(params, reference['params'])


def _run_files(workdir):
  """The bytes of every file of a workdir's checkpoints/ folder and its config.json."""
  files = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'checkpoints', '**'), recursive=True)):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        files[os.path.relpath(path, workdir)] = f.read()
  with open(os.path.join(workdir, 'config.json'), 'rb') as f:
    files['config.json'] = f.read()
  return files


@pytest.mark.slow
def test_resuming_with_another_model_is_refused_and_changes_nothing(reference, run_dirs):
  workdir = run_dirs['root'] / 'other_model'
  shutil.copytree(reference['workdir'], workdir)
  before = _run_files(workdir)
  result = subprocess.run(
      _train_cmd(workdir, run_dirs['data'], '--config.model.text_width=48'),
      cwd=REPO,
      env=_env(run_dirs['cache']),
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  error = result.stderr.strip().splitlines()[-1]
  assert error.startswith('error: ') and 'holds another model' in error
  assert 'model.text_width=32 there, 48 here' in error
  assert _run_files(workdir) == before  # config.json, tokenizer and steps untouched


@pytest.mark.slow
def test_damaged_latest_checkpoint_resumes_from_the_step_before(reference, run_dirs):
  workdir = run_dirs['root'] / 'damaged'
  shutil.copytree(reference['workdir'], workdir)
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert checkpoint_lib.parameter_shapes(checkpoints, TOTAL_STEPS)  # readable before
  # Truncate the largest data file of the last step; leave a stale temporary folder too.
  last = glob.glob(os.path.join(checkpoints, str(TOTAL_STEPS), 'state', '**', '*'), recursive=True)
  largest = max((p for p in last if os.path.isfile(p)), key=os.path.getsize)
  with open(largest, 'r+b') as f:
    f.truncate(os.path.getsize(largest) // 2)
  os.makedirs(os.path.join(checkpoints, f'{TOTAL_STEPS + 1}.orbax-checkpoint-tmp-1', 'state'))
  result = subprocess.run(
      _train_cmd(workdir, run_dirs['data']),
      cwd=REPO,
      env=_env(run_dirs['cache']),
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  before = TOTAL_STEPS - 3  # checkpoint_every = 3
  assert f'warning: checkpoint step {TOTAL_STEPS} does not restore' in result.stdout
  assert f'Resuming from step {before}' in result.stdout
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


@pytest.mark.slow
def test_sharded_step_on_8_devices_equals_single_device(run_dirs):
  result = subprocess.run(
      [sys.executable, '-m', 'tests.sharded_check'],
      cwd=REPO,
      env=_env(run_dirs['cache'], devices=8),
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'sharded ok: fsdp 2' in result.stdout
  assert "P('fsdp', None)" in result.stdout  # fsdp=2 really shards the parameters


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

OWN_COLOURS = {
    'red': (200, 30, 30),
    'blue': (30, 40, 190),
    'green': (40, 150, 60),
    'black': (20, 20, 20),
    'yellow': (230, 200, 40),
    'purple': (120, 40, 150),
    'orange': (240, 130, 20),
    'grey': (128, 128, 128),
}
OWN_CLASSES = [
    ('TOPS', 'SHIRTS', 'cotton shirt'),
    ('TOPS', 'BLOUSES', 'silk blouse'),
    ('SHOES', 'BOOTS', 'leather boots'),
    ('SHOES', 'SNEAKERS', 'canvas sneakers'),
]


def _write_own_catalog(manual):
  """64 products, one photo each (96x80, white margins): 8 colours x 4 classes x 2 sizes; the
  products of 2 colours are the validation split (16), the rest training (48)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  from tests import prepare_test_data  # pylint: disable=import-outside-toplevel

  os.makedirs(os.path.join(manual, 'images'))
  records, index = {'train': [], 'validation': []}, 0
  for c, (colour, rgb) in enumerate(OWN_COLOURS.items()):
    split = 'validation' if c in (3, 7) else 'train'
    for category, subcategory, noun in OWN_CLASSES:
      for size, margin in (('small', 24), ('large', 8)):
        image = np.full((80, 96, 3), 255, np.uint8)
        image[margin : 80 - margin, margin : 96 - margin] = rgb
        name = f'images/{index}.png'
        Image.fromarray(image).save(os.path.join(manual, name))
        records[split].append(
            prepare_test_data.catalog_record(
                index,
                name,
                category=category,
                subcategory=subcategory,
                caption=f'{colour.capitalize()} {size} {noun}',
            )
        )
        index += 1
  for split, rows in records.items():
    prepare_test_data.write_jsonl(os.path.join(manual, f'{split}.jsonl'), rows)
  return records


def _readme_commands(section: str) -> list[str]:
  """The commands of the first bash block under ``## {section}`` in README.md."""
  with open(os.path.join(REPO, 'README.md')) as f:
    text = f.read()
  start = text.index(f'## {section}\n')
  block = text[text.index('```bash\n', start) + len('```bash\n') :]
  block = block[: block.index('```')].replace('\\\n', ' ')
  return [line.strip() for line in block.splitlines() if line.strip().startswith('python')]


@pytest.mark.slow
def test_own_catalog_readme_recipe(reference, run_dirs):
  """README "Your own catalog", as written: prepare with the checkpoint's tokenizer, fine-tune
  from it (the class heads fresh), evaluate without dataset flags, search; paths swapped for
  temporary ones, the demo config for the tiny one the reference run trained, a few steps."""
  import shlex  # pylint: disable=import-outside-toplevel

  root = run_dirs['root'] / 'own_catalog'
  manual = str(root / 'my_catalog')
  records = _write_own_catalog(manual)
  assert (len(records['train']), len(records['validation'])) == (48, 16)
  swaps = {
      'workdirs/demo/checkpoints': os.path.join(reference['workdir'], 'checkpoints'),
      'workdirs/my_catalog': str(root / 'work'),
      '/path/to/my_catalog': manual,
      './data': str(root / 'data'),
      'configs/demo.py': TINY,
  }
  commands = _readme_commands('Your own catalog')
  assert len(commands) == 4, commands
  outputs = []
  for index, command in enumerate(commands):
    for before, after in swaps.items():
      command = command.replace(before, after)
    argv = shlex.split(command)
    argv[0] = sys.executable
    if index == 1:  # training: a few steps
      argv += ['--config.total_steps=4', '--config.checkpoint_every=2', '--config.log_every=2']
    result = subprocess.run(
        argv, cwd=REPO, env=_env(run_dirs['cache']), capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, (command, result.stderr[-3000:])
    assert 'Traceback' not in result.stderr
    outputs.append(result.stdout)
  prepared, trained, evaluated, searched = outputs
  assert 'from the checkpoint' in prepared
  assert 'loaded ' in trained and 'fresh (shape differs' in trained  # the class heads
  assert '| TIR' in evaluated
  with open(root / 'work' / 'results' / 'retrieval.json') as f:
    assert json.load(f)['dataset'] == 'catalog'
  assert 'rank' in searched and os.path.getsize(root / 'work' / 'search.html') > 1000
