"""Shared fixtures: a tiny model config so that CPU compiles stay short."""

import os
import sys

# Tests run tiny models: XLA's backend optimisations cost more compile time than they save.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + ' --xla_backend_optimization_level=0'
  ).strip()

# Make the repository importable when pytest is started from anywhere.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402

# The spec's listings and tools: ../shared beside the repository (as on developer machines
# and in CI).
SHARED = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'shared'
)

from configs import pretrain  # noqa: E402


def tiny_config(heads=('mlm', 'itm', 'mir')):
  """pvlt_micro at 64x64, L=16, vocabulary 64, position embeddings stored for 32x32."""
  config = pretrain.get_config()
  m = config.model
  m.variant = 'pvlt_micro'
  m.image_size = 64
  m.text_length = 16
  m.vocab_size = 64
  m.pos_grid_size = 32  # differs from the input, so every stage resizes its embeddings
  m.text_width = 32
  m.head_width = 32
  m.mir_channels = 8
  m.num_main_classes = 5
  m.num_sub_classes = 7
  m.heads = heads
  m.dtype = 'float32'
  config.masking.image_unit = 8
  config.masking.mlm_max_predictions = 6
  return config


@pytest.fixture
def tiny():
  return tiny_config()


def random_variables(model, image_size=64, text_length=16, seed=0):
  """float32 variables of ``model`` without compiling its initialiser (numpy draws): norm
  scales and BatchNorm variances 1, everything else N(0, 0.05^2)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from flax import traverse_util  # pylint: disable=import-outside-toplevel

  abstract = jax.eval_shape(
      lambda: model.init(
          jax.random.key(0),
          jnp.zeros((1, image_size, image_size, 3)),
          jnp.zeros((1, text_length), jnp.int32),
      )
  )
  rng = np.random.default_rng(seed)
  flat = {
      path: (
          np.ones(leaf.shape, np.float32)
          if path[-1] in ('var', 'scale')
          else (0.05 * rng.standard_normal(leaf.shape)).astype(np.float32)
      )
      for path, leaf in traverse_util.flatten_dict(abstract).items()
  }
  return traverse_util.unflatten_dict(flat)


# The fixtures (of tests/test_train.py) that wait for a run of tests/train_runs.py: the job
# (formatted with the test's parameters).
TRAIN_RUN_FIXTURES = {
    'reference': 'reference',
    'interrupted_run': 'interrupted_{how}',
    'other_model_run': 'other_model',
    'damaged_run': 'damaged',
    'sharded_check_run': 'sharded_check',
    'own_catalog_run': 'own_catalog',
}


@pytest.fixture(scope='session')
def train_runs(tmp_path_factory):
  """The end-to-end runs of tests/train_runs.py, in one folder for the session."""
  from tests import train_runs as runs_lib  # pylint: disable=import-outside-toplevel

  runs = runs_lib.Runs(tmp_path_factory.mktemp('train'))
  yield runs
  runs.close()


@pytest.fixture(scope='session', autouse=True)
def _train_runs_start_early(request):
  """Starts the runs the selected tests need at the session's start, in the background: they
  keep about one core busy while the in-process tests before tests/test_train.py use the other
  (CI has 2); the tests wait for them where they need them."""
  needed = {
      job.format(**getattr(getattr(item, 'callspec', None), 'params', {}))
      for item in request.session.items
      for fixture, job in TRAIN_RUN_FIXTURES.items()
      if {'train_runs', fixture} <= set(getattr(item, 'fixturenames', ()))
  }
  if needed:
    runs = request.getfixturevalue('train_runs')
    for job in runs.jobs:  # in their order: the reference run first
      if job in needed:
        runs.start(job)
