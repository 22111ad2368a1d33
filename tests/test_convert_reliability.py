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
