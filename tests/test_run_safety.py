"""A user's mistakes neither damage a run nor end in a traceback: the config is checked before
anything runs, a workdir holds one training, checkpoints of another model or tokenizer are
refused, damaged checkpoint steps are passed over, ``keep_checkpoints=0`` keeps every step."""

import os
import shutil
import signal
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import demo
from input_pipeline.tokenizer import train_sentencepiece
from mvlt_jax import checkpoint as checkpoint_lib
from mvlt_jax import config_check, locking, summary, train
from mvlt_jax.errors import ConfigError, MVLTError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, 'tests', 'tiny_train_config.py')


def _tiny_train_config():
  sys.path.insert(0, REPO)
  from tests import tiny_train_config  # pylint: disable=import-outside-toplevel

  return tiny_train_config.get_config()


# ----------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    'field, value, message',
    [
        ('model.variant', 'pvlt_huge', "Unknown model.variant 'pvlt_huge'"),
        ('model.dtype', 'fp8', "Unknown model.dtype 'fp8'"),
        ('model.heads', (), 'config.model.heads is empty'),
        ('model.heads', ('mlm', 'captions'), "unknown ['captions']"),
        ('model.image_size', 40, 'config.model.image_size=40: use a multiple of 32'),
        ('masking.image_unit', 24, 'config.masking.image_unit=24 does not divide'),
        ('loss_schedule', 'mixed', "config.loss_schedule='mixed'"),
        ('checkpoint_every', 0, 'config.checkpoint_every=0: use >= 1'),
        ('log_every', 0, 'config.log_every=0: use >= 1'),
        ('total_steps', -5, 'config.total_steps=-5'),
        ('keep_checkpoints', -1, 'config.keep_checkpoints=-1'),
        ('global_batch_size', 0, 'config.global_batch_size=0'),
        ('task', 'finetune', "config.task='finetune': choose one of"),
        ('init_from_mismatch', 'skip', "config.init_from_mismatch='skip': choose one of"),
        ('init_from', '/nonexistent/ckpt', 'config.init_from=/nonexistent/ckpt: no such'),
    ],
)
def test_config_mistakes_are_named_before_anything_runs(field, value, message):
  config = _tiny_train_config()
  *parents, leaf = field.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = value
  with pytest.raises(ConfigError) as error:
    config_check.check_config(config)
  assert message in str(error.value)


def test_mesh_and_batch_are_checked_against_the_devices():
  config = _tiny_train_config()
  config.mesh.fsdp = 3
  config_check.check_config(config)  # no device is asked for before distributed init
  with pytest.raises(ConfigError, match='mesh.fsdp=3 does not divide'):
    config_check.check_devices(config)


def test_tokenizer_from_is_a_declared_option_off_by_default():
  from mvlt_jax import data  # pylint: disable=import-outside-toplevel

  config = _tiny_train_config()
  assert config.dataset.prepare_options.tokenizer_from == ''  # settable with --config.dataset...
  options = data.prepare_options(config)
  assert options['tokenizer'] == config.dataset.tokenizer and not options['tokenizer_from']
  config.dataset.prepare_options.tokenizer_from = '/ckpt'
  options = data.prepare_options(config)
  assert 'tokenizer' not in options and options['tokenizer_from'] == '/ckpt'


def test_epochs_of_no_step_are_refused():
  config = _tiny_train_config()
  config.total_steps, config.num_epochs = 0, 0
  with pytest.raises(ConfigError, match='trains nothing'):
    config_check.check_config(config)


def test_paths_that_are_files_or_not_checkpoints(tmp_path):
  a_file = tmp_path / 'notes.txt'
  a_file.write_text('x')
  config = _tiny_train_config()
  config.dataset.data_dir = str(a_file)
  with pytest.raises(ConfigError, match='data_dir=.*is a file'):
    config_check.check_config(config)
  with pytest.raises(ConfigError, match='is a file; give a directory'):
    config_check.check_workdir(str(a_file))
  config = _tiny_train_config()
  config.task, config.checkpoint = 'eval_retrieval', str(tmp_path)
  with pytest.raises(ConfigError, match='is not a checkpoint: it holds no step folders'):
    config_check.check_config(config)
  config.checkpoint = str(a_file)
  with pytest.raises(ConfigError, match='is a file, not a checkpoint directory'):
    config_check.check_config(config)


def test_corrupt_config_json_is_named(tmp_path):
  (tmp_path / 'config.json').write_text('{"model": {"variant": ')
  with pytest.raises(checkpoint_lib.CheckpointError, match='config.json cannot be read'):
    checkpoint_lib.read_config(str(tmp_path))
  assert issubclass(checkpoint_lib.CheckpointNotFoundError, MVLTError)


def test_summary_of_the_demo_config_needs_no_data():
  text = summary.format_summary(demo.get_config().model)
  assert 'parameters: ' in text and 'attribute heads left out' in text


@pytest.mark.parametrize(
    'arguments, message',
    [
        (
            ['--config.model.dropout=0.1'],
            'error: --config.model.dropout: the config has no ' "field 'dropout'.",
        ),
        (['--config.model.dtype=fp8'], "error: Unknown model.dtype 'fp8'"),
        (
            ['--config.task=summary', '--config.model.image_size=50'],
            'error: config.model.' 'image_size=50',
        ),
    ],
)
def test_main_prints_one_error_line(arguments, message):
  result = subprocess.run(
      [sys.executable, 'main.py', f'--config={TINY}', '--workdir=/nonexistent/w', *arguments],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(message)


# ----------------------------------------------------------------------------- checkpoints


@flax.struct.dataclass
class _State:
  """A small stand-in of TrainState (the fields ``checkpoint.save`` / ``restore`` handle)."""

  params: dict
  step: jax.Array


def _state(scale: float, width: int = 256) -> _State:
  # Random values: constant ones compress to a few bytes, too few to damage.
  kernel = np.random.default_rng(int(scale)).normal(size=(3, width)).astype(np.float32)
  return _State(params={'dense': {'kernel': jnp.asarray(kernel)}}, step=jnp.array(0))


def _abstract(width: int = 256) -> _State:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0.0, width))


def _save_steps(directory, steps, keep=3):
  manager = checkpoint_lib.make_manager(str(directory), keep=keep, async_save=False)
  for step in steps:
    checkpoint_lib.save(manager, step, _state(float(step)), {'step': step})
  manager.wait_until_finished()
  return manager


def _largest_file(directory):
  files = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
  return max(files, key=os.path.getsize)


def test_keep_checkpoints_0_keeps_every_step(tmp_path):
  manager = _save_steps(tmp_path / 'all', [1, 2, 3, 4, 5], keep=0)
  assert manager.all_steps() == [1, 2, 3, 4, 5]
  manager = _save_steps(tmp_path / 'two', [1, 2, 3], keep=2)
  assert manager.all_steps() == [2, 3]


@pytest.mark.parametrize('damage', ['truncated', 'missing_item', 'missing_metadata'])
def test_damaged_steps_are_passed_over_and_put_aside(tmp_path, damage):
  directory = tmp_path / 'checkpoints'
  manager = _save_steps(directory, [1, 2, 3])
  state_dir = directory / '3' / 'state'
  if damage == 'truncated':
    largest = _largest_file(state_dir / 'ocdbt.process_0')
    with open(largest, 'r+b') as f:
      f.truncate(os.path.getsize(largest) // 2)
  elif damage == 'missing_item':
    shutil.rmtree(state_dir)
  else:
    for root, _, names in os.walk(state_dir):
      for name in names:
        if name in ('_METADATA', 'manifest.ocdbt'):
          os.remove(os.path.join(root, name))
  restored = checkpoint_lib.restore_latest(manager, _abstract())
  assert restored.step == 2 and restored.data_state == {'step': 2}
  np.testing.assert_array_equal(
      restored.state.params['dense']['kernel'], _state(2.0).params['dense']['kernel']
  )
  assert [step for step, _ in restored.unreadable] == [3]
  moved = checkpoint_lib.put_aside(manager, [3], str(tmp_path / 'aside'))
  assert os.path.isdir(moved[0]) and manager.all_steps() == [1, 2]
  # The run goes on: step 3 can be saved again.
  checkpoint_lib.save(manager, 3, _state(3.0), {'step': 3})
  manager.wait_until_finished()
  assert manager.all_steps() == [1, 2, 3]


def test_no_restorable_step_stops_with_every_reason(tmp_path):
  directory = tmp_path / 'checkpoints'
  manager = _save_steps(directory, [1, 2])
  for step in (1, 2):
    shutil.rmtree(directory / str(step) / 'state')
  with pytest.raises(checkpoint_lib.CheckpointError) as error:
    checkpoint_lib.restore_latest(manager, _abstract())
  assert 'step 2: ' in str(error.value) and 'step 1: ' in str(error.value)
  assert sorted(os.listdir(directory)) == ['1', '2']  # nothing moved or deleted


def _tokenizer(words):
  captions = [f'{a} {b} {c} shirt' for a in words for b in words for c in ('red', 'blue')]
  return train_sentencepiece(captions, 40)


def test_resume_refuses_another_model_or_tokenizer(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  _save_steps(directory, [1])
  config = ml_collections.ConfigDict(
      {'model': {'width': 4}, 'dataset': {'name': 'catalog', 'data_dir': '/data'}}
  )
  tokenizer = _tokenizer(['cotton', 'linen', 'wool', 'silk'])
  tokenizer_dir = str(tmp_path / 'tokenizer_src')
  tokenizer.save(tokenizer_dir)
  checkpoint_lib.write_run_files(directory, config, tokenizer_dir)
  # The same model and tokenizer: accepted.
  checkpoint_lib.check_resumable(directory, config, tokenizer, _abstract().params)
  wider = ml_collections.ConfigDict(config.to_dict())
  wider.model.width = 6
  with pytest.raises(checkpoint_lib.CheckpointError) as error:
    checkpoint_lib.check_resumable(directory, wider, tokenizer, _abstract(258).params)
  assert 'holds another model' in str(error.value)
  assert 'model.width=4 there, 6 here' in str(error.value)
  other = _tokenizer(['denim', 'satin', 'tweed', 'fleece'])
  # The fingerprint decides, whatever the sizes (the case had equal vocabulary sizes).
  with pytest.raises(checkpoint_lib.CheckpointError, match='another one'):
    checkpoint_lib.check_resumable(directory, config, other, _abstract().params)


# ----------------------------------------------------------------------------- one job per workdir


def test_a_workdir_holds_one_training(tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  holder = subprocess.Popen(
      [
          sys.executable,
          '-c',
          'import sys, time\n'
          'from mvlt_jax import locking\n'
          f'with locking.exclusive({workdir!r}, "training"):\n'
          '  print("locked", flush=True)\n'
          '  time.sleep(600)\n',
      ],
      cwd=REPO,
      stdout=subprocess.PIPE,
      text=True,
  )
  try:
    assert holder.stdout.readline().strip() == 'locked'
    config = _tiny_train_config()
    config.dataset.data_dir = str(tmp_path / 'data')
    with pytest.raises(locking.FolderInUseError) as error:
      train.train_and_evaluate(config, workdir)
    assert f'process {holder.pid} on ' in str(error.value)
    assert not os.path.exists(tmp_path / 'data')  # refused before preparing anything
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # The lock of a killed process does not block the next job.
  with locking.exclusive(workdir, 'training'):
    pass


def test_every_command_line_answers_help(capsys):
  from input_pipeline import prepare  # pylint: disable=import-outside-toplevel
  from mvlt_jax import cli, convert, search  # pylint: disable=import-outside-toplevel

  assert cli.help_requested(['catalog', '--help'])
  assert not cli.help_requested(['to-torch', '--', '--help'])  # after --: not a flag
  for program, usage in (
      (prepare, 'usage: python -m input_pipeline.prepare'),
      (convert, 'usage: python -m mvlt_jax.convert'),
      (search, 'python -m mvlt_jax.search'),
  ):
    assert program.main(['--help']) == 0
    out = capsys.readouterr().out
    assert usage in out and '\nflags:\n' in out, program.__name__
