"""The converter's promises on bad input (#16): one ``error: ...`` line (an ``MVLTError`` in
the library) or a loud warning, never a traceback; nothing exported or imported silently wrong.

Tiny models only (pvlt_micro at 64x64, random numpy weights): no test here compiles the model.
"""

import argparse
import os
import struct

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from mvlt_jax import convert, torch_port  # noqa: E402
from mvlt_jax.errors import MVLTError  # noqa: E402
from mvlt_jax.models import build_model  # noqa: E402
from mvlt_jax.models.mvlt import ATTRIBUTE_LABELS  # noqa: E402
from tests import conftest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(REPO, 'configs', 'demo.py')
# configs/demo.py at the test suite's tiny widths, with the sizes that training takes from the
# data (vocabulary, classes, attribute classes) resolved, as a demo checkpoint's config.json.
DEMO_TINY_OVERRIDES = [
    '--config.model.text_length=16',
    '--config.model.pos_grid_size=32',
    '--config.model.text_width=32',
    '--config.model.head_width=32',
    '--config.model.mir_channels=8',
    '--config.model.vocab_size=64',
    '--config.model.num_main_classes=5',
    '--config.model.num_sub_classes=7',
    '--config.model.attribute_classes=(4, 3)',
]


def run(argv, capsys):
  """``python -m mvlt_jax.convert ARGV``: (exit status, stdout, stderr)."""
  status = convert.main([str(arg) for arg in argv])
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def assert_one_error_line(status, err, *fragments):
  assert status == 1, err
  assert err.startswith('error: ') and len(err.splitlines()) == 1, err
  assert 'Traceback' not in err, err
  for fragment in fragments:
    assert fragment in err, (fragment, err)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
  """A tiny demo checkpoint (every head, the attribute heads included) and its state dict."""
  config = convert.load_config(DEMO_CONFIG, DEMO_TINY_OVERRIDES)
  assert 'attributes' in config.model.heads
  model = build_model(config.model)
  variables = conftest.random_variables(model, 64, config.model.text_length, seed=3)
  directory = str(tmp_path_factory.mktemp('demo') / 'checkpoints')
  convert.save_converted_checkpoint(variables, config, directory)
  state = convert.variables_to_torch_state_dict(variables)
  return argparse.Namespace(
      config=config, model=model, variables=variables, checkpoint=directory, state=state
  )


# --- a. The demo's checkpoints export (the attribute heads included) ------------------------


def test_demo_checkpoint_exports_and_loads_into_the_port(demo, tmp_path, capsys):
  out = tmp_path / 'demo.pth'
  status, stdout, err = run(['to-torch', '--checkpoint', demo.checkpoint, '--out', out], capsys)
  assert status == 0, err
  assert f'to {out}' in stdout
  state = convert.load_torch_state_dict(str(out))
  port = torch_port.MVLT(torch_port.config_from_model_config(demo.config.model))
  port.load_state_dict(state, strict=True)
  attribute_modules = {
      name.split('.')[0] for name in state if 'attributes' in convert.key_groups(name)
  }
  assert attribute_modules == {
      f'{side}_attr{index}_head{suffix}'
      for side in ATTRIBUTE_LABELS
      for index in range(2)
      for suffix in ('', '_embed')
  }
  assert tuple(state['image_attr1_head.linear.weight'].shape) == (3, 32)
  assert set(state) == set(demo.state)
  assert all(torch.equal(state[name], demo.state[name]) for name in state)


def test_demo_config_without_the_data_sizes_is_one_error_line(tmp_path, capsys):
  """configs/demo.py leaves the vocabulary and class counts to the data: an --init export of
  it names them instead of failing inside JAX (an empty word table)."""
  out = tmp_path / 'init.pth'
  status, _, err = run(
      [
          'to-torch',
          '--init',
          f'--config={DEMO_CONFIG}',
          '--config.model.attribute_classes=(4, 3)',
          '--out',
          out,
      ],
      capsys,
  )
  assert_one_error_line(
      status, err, 'config.model.vocab_size, num_main_classes, num_sub_classes: 0', '--class_names'
  )
  assert not out.exists()
  with pytest.raises(convert.ConversionError, match='vocab_size'):
    convert._build_model(
        convert.load_config(DEMO_CONFIG, ['--config.model.attribute_classes=(4,)'])
    )


# --- b. Bad files: one line naming the file and the reason ----------------------------------


def _safetensors_bytes(header, data_size):
  header = header.encode()
  return struct.pack('<Q', len(header)) + header + b'\0' * data_size


@pytest.fixture(scope='module')
def good_files(tmp_path_factory):
  """The bytes of a small valid .safetensors and .pth."""
  directory = tmp_path_factory.mktemp('files')
  state = {'block1.0.attn.q.weight': torch.zeros(32, 32), 'pos_embed1': torch.ones(1, 4, 8)}
  files = {}
  for suffix in ('safetensors', 'pth'):
    path = str(directory / f'good.{suffix}')
    convert.save_torch_state_dict(state, path)
    with open(path, 'rb') as f:
      files[suffix] = f.read()
  return files


BAD_FILES = {
    # name: (bytes of the file from the good ones, the reason in the message)
    'truncated.safetensors': (
        lambda good: good['safetensors'][: len(good['safetensors']) // 2],
        'truncated: its header describes 4224 bytes of tensor data, the file holds',
    ),
    'tiny.safetensors': (lambda good: b'\x10\0\0', 'truncated: 3 bytes'),
    'empty.safetensors': (lambda good: b'', 'the file is empty (0 bytes)'),
    'text.safetensors': (lambda good: b'just some text, no tensors', 'not a safetensors file'),
    'bad_json.safetensors': (
        lambda good: _safetensors_bytes('{"a": [1, 2', 16),
        'its header is not valid JSON',
    ),
    'wrong_header.safetensors': (  # 100 float32 need 400 bytes, the header gives 40
        lambda good: _safetensors_bytes(
            '{"a": {"dtype": "F32", "shape": [10, 10], "data_offsets": [0, 40]}}', 400
        ),
        'damaged (SafetensorError: Error while deserializing header: invalid shape',
    ),
    'a_pth.safetensors': (lambda good: good['pth'], 'not safetensors (name it .pth)'),
    'truncated.pth': (
        lambda good: good['pth'][: len(good['pth']) - 100],
        'truncated or damaged: its zip archive cannot be opened',
    ),
    'empty.pth': (lambda good: b'', 'the file is empty (0 bytes)'),
    'text.pth': (lambda good: b'not a checkpoint', 'neither a zip archive nor a pickle'),
    'a_safetensors.pth': (lambda good: good['safetensors'], 'name it .safetensors'),
}


@pytest.mark.parametrize('name', sorted(BAD_FILES))
def test_bad_files_are_one_error_line(name, good_files, tmp_path, capsys):
  make, reason = BAD_FILES[name]
  path = tmp_path / name
  path.write_bytes(make(good_files))
  with pytest.raises(convert.ConversionError, match=r'^[^\n]+$') as error:
    convert.load_torch_state_dict(str(path))
  assert str(error.value).startswith(f'{path}: cannot be read as a ') and reason in str(error.value)
  # The command line and training's init_from say the same.
  config_flag = f'--config={os.path.join(REPO, "configs", "pretrain.py")}'
  status, _, err = run(
      ['from-torch', '--torch', path, config_flag, '--out', tmp_path / 'x'], capsys
  )
  assert_one_error_line(status, err, str(path), reason)
  with pytest.raises(MVLTError) as init_error:
    convert.load_init_variables(str(path), conftest.tiny_config().model)
  assert str(init_error.value) == str(error.value)
  assert not (tmp_path / 'x').exists()


def test_a_pth_with_a_foreign_object_names_it(tmp_path, capsys):
  import fractions  # pylint: disable=import-outside-toplevel

  path = tmp_path / 'pickled.pth'
  torch.save({'model': {'a': torch.zeros(2)}, 'lr': fractions.Fraction(1, 3)}, str(path))
  with pytest.raises(convert.ConversionError) as error:
    convert.load_torch_state_dict(str(path))
  message = str(error.value)
  assert '\n' not in message
  assert 'it pickles a fractions.Fraction object, which weights_only=True does not load' in message


# --- c. NaN / Inf weights: refused both ways unless --allow_nonfinite -------------------------

PRETRAIN_CONFIG = os.path.join(REPO, 'configs', 'pretrain.py')
TINY_OVERRIDES = [  # tests/conftest.py's tiny_config as flags (mlm, itm, mir)
    '--config.model.variant=pvlt_micro',
    '--config.model.image_size=64',
    '--config.model.text_length=16',
    '--config.model.vocab_size=64',
    '--config.model.pos_grid_size=32',
    '--config.model.text_width=32',
    '--config.model.head_width=32',
    '--config.model.mir_channels=8',
]


@pytest.fixture(scope='module')
def tiny():
  """conftest.tiny_config's model (mlm, itm, mir): random variables, their state dict."""
  config = convert.load_config(PRETRAIN_CONFIG, TINY_OVERRIDES)
  model = build_model(config.model)
  variables = conftest.random_variables(model, seed=4)
  state = convert.variables_to_torch_state_dict(variables)
  return argparse.Namespace(config=config, model=model, variables=variables, state=state)


def test_nonfinite_weights_are_refused_on_import_unless_allowed(tiny, tmp_path, capsys):
  state = {name: value.clone() for name, value in tiny.state.items()}
  state['block2.0.attn.q.weight'][0, :3] = float('nan')
  state['t2i_head.conv4.1.running_var'][1] = float('inf')
  path = tmp_path / 'nan.pth'
  convert.save_torch_state_dict(state, str(path))
  flags = ['from-torch', '--torch', path, f'--config={PRETRAIN_CONFIG}', *TINY_OVERRIDES]
  status, _, err = run([*flags, '--out', tmp_path / 'refused'], capsys)
  assert_one_error_line(
      status,
      err,
      f'{path}: non-finite values (NaN/Inf) in 2 tensors: ',
      'block2.0.attn.q.weight (3 NaN of 4096 values)',
      't2i_head.conv4.1.running_var (1 Inf of 24 values)',
      '--allow_nonfinite',
  )
  assert not (tmp_path / 'refused').exists()
  with pytest.raises(MVLTError, match=r'nan.pth: non-finite .* block2.0.attn.q.weight'):
    convert.load_init_variables(str(path), tiny.config)  # training's init_from refuses too
  # Allowed: imported as they are, with a warning that names them.
  status, out, err = run([*flags, '--out', tmp_path / 'allowed', '--allow_nonfinite'], capsys)
  assert status == 0, err
  assert 'WARNING: imported non-finite values (NaN/Inf) as they are' in out
  assert 'block2.0.attn.q.weight (3 NaN of 4096 values)' in out
  kernel = convert.load_checkpoint_variables(str(tmp_path / 'allowed'))['params']['block2']['0'][
      'attn'
  ]['q']['kernel']
  assert np.isnan(kernel).sum() == 3


def test_nonfinite_parameters_are_refused_on_export_unless_allowed(tiny, tmp_path, capsys):
  variables = jax_tree_copy(tiny.variables)
  variables['params']['itm_head']['linear']['bias'][1] = float('-inf')
  variables['batch_stats']['t2i_head']['conv4']['1']['mean'][:2] = float('nan')
  directory = str(tmp_path / 'checkpoint')
  convert.save_converted_checkpoint(variables, tiny.config, directory)
  out = tmp_path / 'nan.pth'
  status, _, err = run(['to-torch', '--checkpoint', directory, '--out', out], capsys)
  assert_one_error_line(
      status,
      err,
      f'{directory}: non-finite values (NaN/Inf) in 2 of the ',
      'params/itm_head/linear/bias (1 Inf of 2 values)',
      'batch_stats/t2i_head/conv4/1/mean (2 NaN of 24 values)',
      'refusing to export them (--allow_nonfinite',
  )
  assert not out.exists()
  with pytest.raises(convert.ConversionError, match='itm_head/linear/bias'):
    convert.variables_to_torch_state_dict(variables)
  status, stdout, err = run(
      ['to-torch', '--checkpoint', directory, '--out', out, '--allow_nonfinite'], capsys
  )
  assert status == 0, err
  assert 'WARNING: exported non-finite values (NaN/Inf) as they are' in stdout
  assert torch.isinf(convert.load_torch_state_dict(str(out))['itm_head.linear.bias'][1])


def jax_tree_copy(variables):
  """A deep copy of nested dicts of numpy arrays (writable)."""
  if isinstance(variables, dict):
    return {key: jax_tree_copy(value) for key, value in variables.items()}
  return np.array(variables)


# --- d. to-torch does not overwrite --out (as from-torch) -------------------------------------


def test_to_torch_refuses_an_existing_out(demo, tmp_path, capsys):
  out = tmp_path / 'taken.pth'
  out.write_bytes(b'precious')
  status, _, err = run(['to-torch', '--checkpoint', demo.checkpoint, '--out', out], capsys)
  assert_one_error_line(status, err, f'{out} already exists; choose a new --out file')
  assert out.read_bytes() == b'precious'
  # Refused before any work: even with --init (whose compile would take seconds).
  init = ['to-torch', '--init', f'--config={PRETRAIN_CONFIG}', *TINY_OVERRIDES, '--out', out]
  assert_one_error_line(*run(init, capsys)[::2], 'already exists')
  # from-torch likewise refuses a directory that holds a checkpoint.
  status, _, err = run(
      [
          'from-torch',
          '--torch',
          tmp_path / 'any.pth',
          f'--config={PRETRAIN_CONFIG}',
          '--out',
          demo.checkpoint,
      ],
      capsys,
  )
  assert_one_error_line(status, err, 'already holds a checkpoint at step 0')


# --- e. BatchNorm counters are not reported as ignored weights ---------------------------------


def test_batchnorm_counters_are_reported_apart_from_ignored_weights(tiny, tmp_path, capsys):
  variables, report = convert.import_state_dict(tiny.state, tiny.model, tiny.config.model)
  counters = [name for name in tiny.state if name.endswith('.num_batches_tracked')]
  assert len(counters) == 11 and all(name.startswith('t2i_head.') for name in counters)
  assert report.ignored == [] and sorted(report.bn_counters) == sorted(counters)
  summary = report.summary()
  assert 'BatchNorm counters not needed by JAX: 11 (num_batches_tracked)' in summary
  assert 'ignored' not in summary.replace('0 ignored', ''), summary
  assert variables['batch_stats']['t2i_head']['conv4']['1']['mean'].shape == (24,)
  # The command line prints that summary; training's init_from line leaves the counters out.
  path = tmp_path / 'tiny.safetensors'
  convert.save_torch_state_dict(tiny.state, str(path))
  status, out, err = run(
      [
          'from-torch',
          '--torch',
          path,
          f'--config={PRETRAIN_CONFIG}',
          *TINY_OVERRIDES,
          '--out',
          tmp_path / 'converted',
      ],
      capsys,
  )
  assert status == 0, err
  assert 'BatchNorm counters not needed by JAX: 11 (num_batches_tracked)' in out
  assert 'ignored: t2i_head' not in out
  _, description = convert.load_init_variables(str(path), tiny.config)
  assert 'ignored' not in description and 't2i_head' not in description, description
  # Real ignored weights are still 'ignored': the decoder into a model without it.
  config = conftest.tiny_config(heads=('mlm', 'itm'))
  _, report = convert.import_state_dict(
      tiny.state, build_model(config.model), config.model, allow_unexpected='mir'
  )
  assert report.bn_counters == [] and len(report.ignored) > 11
  assert 'ignored: t2i_head (' in report.summary()
