"""PyTorch <-> JAX conversion: name mapping, parity of the two models, files, CLI, errors.

Weights are random (no downloads). Parity uses pvlt_tiny (real widths, depths and grids at
224 and 256) with a 1000-word vocabulary and L=16 so that CPU compiles stay short.
"""

import argparse
import importlib.util
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from flax import traverse_util  # noqa: E402

from mvlt_jax import convert, steps, torch_port  # noqa: E402
from mvlt_jax.models import HEAD_NAMES, VARIANTS, build_model  # noqa: E402
from mvlt_jax.models.mvlt import ATTRIBUTE_LABELS  # noqa: E402
from tests.conftest import SHARED, tiny_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN_CONFIG = os.path.join(REPO, 'configs', 'pretrain.py')
REFERENCE = os.path.join(SHARED, 'reference')
COMPARE_TOOL = os.path.join(SHARED, 'tools', 'compare_state_dict.py')
ALL_HEADS = ('mlm', 'itm', 'mir', 'recognition')
PARITY_OVERRIDES = [
    '--config.model.dtype=float32',
    '--config.model.vocab_size=1000',
    '--config.model.text_length=16',
    f'--config.model.heads={ALL_HEADS}',
]
TOLERANCE = 1e-4  # max abs difference, float32 on CPU


def random_variables(abstract, seed=0):
  """Random values of realistic scale for every variable (biases and statistics included,
  so that a wrong transpose or a swapped leaf cannot hide behind zeros and ones)."""
  rng = np.random.default_rng(seed)
  flat = {}
  for key, leaf in traverse_util.flatten_dict(abstract).items():
    shape, name = leaf.shape, '/'.join(key)
    if key[-1] == 'var':
      value = rng.uniform(0.5, 1.5, shape)
    elif key[-1] == 'scale':
      value = 1.0 + 0.1 * rng.normal(size=shape)
    elif key[-1] == 'embedding':
      value = 0.1 * rng.normal(size=shape)
    elif key[-1] == 'kernel':
      value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))  # unit-variance outputs
      if 't2i_head/score' in name:
        value *= 0.1  # reconstructions of image scale
    else:  # biases, position embeddings, running means
      value = 0.02 * rng.normal(size=shape)
    flat[key] = value.astype(np.float32)
  return traverse_util.unflatten_dict(flat)


@pytest.fixture(scope='module')
def parity():
  """pvlt_tiny with all heads: JAX model, random variables, and the port loaded with them."""
  config = convert.load_config(PRETRAIN_CONFIG, PARITY_OVERRIDES)
  model = build_model(config.model)
  variables = random_variables(convert.abstract_variables(model, config.model))
  port = torch_port.MVLT(torch_port.config_from_model_config(config.model))
  port.load_state_dict(convert.variables_to_torch_state_dict(variables), strict=True)
  apply = jax.jit(lambda v, images, ids: model.apply(v, images, ids, train=False))
  return argparse.Namespace(
      config=config, model=model, variables=variables, port=port.eval(), apply=apply
  )


def batch(config, size, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.random((2, size, size, 3), dtype=np.float32)  # NHWC
  input_ids = rng.integers(0, config.model.vocab_size, (2, config.model.text_length))
  return images, input_ids


def torch_outputs(port, images, input_ids):
  with torch.no_grad():
    outputs = port(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(input_ids))
  # Tensors, or tuples of them (the attribute heads: one per attribute).
  outputs = {
      k: v.numpy() if torch.is_tensor(v) else tuple(t.numpy() for t in v)
      for k, v in outputs.items()
  }
  if 'reconstruction' in outputs:
    outputs['reconstruction'] = outputs['reconstruction'].transpose(0, 2, 3, 1)  # -> NHWC
  return outputs


def test_variant_tables_agree():
  for name, spec in VARIANTS.items():
    assert torch_port.VARIANTS[name] == dict(
        embed_dims=spec.embed_dims,
        num_heads=spec.num_heads,
        mlp_ratios=spec.mlp_ratios,
        depths=spec.depths,
        sr_ratios=spec.sr_ratios,
    ), name


def test_head_lists_agree():
  """``HEAD_NAMES`` (mvlt_jax/models/mvlt.py) is the one list of heads: the JAX-free port
  mirrors it (and the attribute heads' sides), the converter and the steps take it."""
  assert torch_port.HEAD_NAMES == HEAD_NAMES
  assert torch_port.KNOWN_HEADS == frozenset(HEAD_NAMES)
  assert torch_port.ATTRIBUTE_SIDES == tuple(ATTRIBUTE_LABELS)
  assert set(HEAD_NAMES) <= set(convert.GROUPS)
  assert 'loss_attributes' in steps.eval_metric_names(HEAD_NAMES)  # an entry for every head


@pytest.mark.parametrize(
    'flat_key, name',
    [
        (('params', 'block1', '0', 'attn', 'q', 'kernel'), 'block1.0.attn.q.weight'),
        (('params', 'text_embed1', '0', 'kernel'), 'text_embed1.0.weight'),
        (('params', 'text_embed1', '1', 'scale'), 'text_embed1.1.weight'),
        (('params', 't2i_head', 'reduction1', '0', 'kernel'), 't2i_head.reduction1.0.weight'),
        (
            ('batch_stats', 't2i_head', 'reduction1', '1', 'mean'),
            't2i_head.reduction1.1.running_mean',
        ),
        (
            ('batch_stats', 't2i_head', 'reduction1', '1', 'var'),
            't2i_head.reduction1.1.running_var',
        ),
        (
            ('params', 'text_embeddings', 'word_embeddings', 'embedding'),
            'text_embeddings.word_embeddings.weight',
        ),
        (('params', 'pos_embed4'), 'pos_embed4'),
        (('params', 'itm_head', 'linear_bias'), 'itm_head.linear_bias'),
    ],
)
def test_torch_names(flat_key, name):
  assert convert.torch_name(flat_key) == name


def test_layouts():
  dense = np.arange(6.0).reshape(2, 3)  # [in, out]
  key = ('params', 'q', 'kernel')
  assert convert.to_torch_layout(key, dense).shape == (3, 2)
  np.testing.assert_array_equal(convert.to_torch_layout(key, dense), dense.T)
  conv = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)  # [kh, kw, in, out]
  key = ('params', 'sr', 'kernel')
  torch_conv = convert.to_torch_layout(key, conv)
  assert torch_conv.shape == (5, 4, 2, 3) and torch_conv[4, 3, 1, 2] == conv[1, 2, 3, 4]
  np.testing.assert_array_equal(convert.from_torch_layout(key, torch_conv), conv)
  with pytest.raises(convert.ConversionError, match='collection'):
    convert.torch_name(('intermediates', 'x'))


def test_export_loads_strictly_into_the_port(parity):
  state = convert.variables_to_torch_state_dict(parity.variables)
  want = torch_port.state_dict_shapes(parity.port.state_dict())
  assert torch_port.state_dict_shapes(state) == want
  np.testing.assert_array_equal(
      state['mlm_head.mlm_decoder.weight'], state['text_embeddings.word_embeddings.weight']
  )
  assert state['t2i_head.conv4.1.num_batches_tracked'].dtype == torch.int64


@pytest.mark.parametrize('size', [224, 256])
def test_jax_and_port_agree(parity, size):
  images, input_ids = batch(parity.config, size)
  expected = torch_outputs(parity.port, images, input_ids)
  got = parity.apply(parity.variables, jnp.asarray(images), jnp.asarray(input_ids, jnp.int32))
  assert (
      set(got)
      == set(expected)
      == {'itm_logits', 'mlm_logits', 'reconstruction', 'main_logits', 'sub_logits'}
  )
  for key, value in expected.items():
    assert got[key].shape == value.shape, key
    difference = float(np.max(np.abs(np.asarray(got[key]) - value)))
    assert difference <= TOLERANCE, f'{key} at {size}: max abs diff {difference}'
  assert expected['reconstruction'].shape == (2, size, size, 3)


def test_jax_and_port_agree_in_training_mode():
  """BatchNorm with batch statistics and its running-average update (drop rates 0)."""
  config = convert.load_config(
      PRETRAIN_CONFIG,
      PARITY_OVERRIDES
      + [
          "--config.model.heads=('mir',)",
          '--config.model.variant=pvlt_micro',
          '--config.model.drop_path_rate=0.0',
          '--config.model.text_dropout_rate=0.0',
      ],
  )
  model = build_model(config.model)
  variables = random_variables(convert.abstract_variables(model, config.model), seed=1)
  port = torch_port.MVLT(torch_port.config_from_model_config(config.model)).train()
  port.load_state_dict(convert.variables_to_torch_state_dict(variables), strict=True)
  images, input_ids = batch(config, 64)
  expected = torch_outputs(port, images, input_ids)
  train_apply = jax.jit(
      lambda v, images, ids: model.apply(
          v,
          images,
          ids,
          train=True,
          mutable=['batch_stats'],
          rngs={'dropout': jax.random.PRNGKey(0)},
      )
  )
  got, updates = train_apply(variables, jnp.asarray(images), jnp.asarray(input_ids, jnp.int32))
  np.testing.assert_allclose(got['reconstruction'], expected['reconstruction'], atol=TOLERANCE)
  old = convert.variables_to_numpy_state_dict(variables)
  new = convert.variables_to_numpy_state_dict({'params': variables['params'], **updates})
  torch_state = port.state_dict()
  stage2_grid = 64 // 8
  # Grid of each BatchNorm of the decoder, as a divisor of the stage-2 grid.
  divisors = dict(
      reduction1=1,
      reduction2=2,
      reduction3=4,
      conv_upsample1=2,
      conv_upsample2=1,
      conv_upsample3=1,
      conv_upsample4=2,
      conv_upsample5=1,
      conv_concat2=2,
      conv_concat3=1,
      conv4=1,
  )
  momentum = 1.0 - config.model.bn_momentum  # PyTorch's convention: weight of the new batch
  for layer, divisor in divisors.items():
    prefix = f't2i_head.{layer}.1.'
    mean, var = prefix + 'running_mean', prefix + 'running_var'
    np.testing.assert_allclose(new[mean], torch_state[mean].numpy(), atol=1e-6)
    # flax averages the biased batch variance, PyTorch the unbiased one (x n / (n - 1)).
    n = 2 * (stage2_grid // divisor) ** 2
    batch_var = (new[var] - (1 - momentum) * old[var]) / momentum
    unbiased = (1 - momentum) * old[var] + momentum * batch_var * n / (n - 1)
    np.testing.assert_allclose(unbiased, torch_state[var].numpy(), rtol=1e-5, err_msg=layer)


def test_round_trip_is_bit_exact(parity, tmp_path):
  for filename in ('model.pth', 'model.safetensors'):
    path = str(tmp_path / filename)
    convert.save_torch_state_dict(convert.variables_to_torch_state_dict(parity.variables), path)
    state = convert.load_torch_state_dict(path)
    back, report = convert.import_state_dict(state, parity.model, parity.config.model)
    assert jax.tree.structure(back) == jax.tree.structure(parity.variables)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, back, parity.variables))), filename
    assert report.filled_from_init == [] and len(report.loaded) == len(
        jax.tree.leaves(parity.variables)
    )
  # The release's .pth layout: {'model': state_dict} (plus pickled argparse arguments).
  assert set(torch.load(str(tmp_path / 'model.pth'), weights_only=True)) == {'model'}


def test_attribute_heads_round_trip_through_the_port():
  """Every head (the demo's attribute heads too): JAX -> PyTorch port -> JAX with identical
  parameters, and the port's outputs are the JAX model's."""
  config = tiny_config(heads=HEAD_NAMES)
  config.model.attribute_classes = (4, 3)
  model = build_model(config.model)
  variables = random_variables(convert.abstract_variables(model, config.model), seed=7)
  state = convert.variables_to_torch_state_dict(variables)
  convert.check_against_port(state, config)
  port = torch_port.MVLT(torch_port.config_from_model_config(config.model)).eval()
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
  back, report = convert.import_state_dict(state, model, config.model)
  assert report.filled_from_init == []
  assert report.ignored == [] and len(report.bn_counters) == 11  # the decoder's BatchNorms
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, back, variables)))

  images, input_ids = batch(config, 64)
  expected = torch_outputs(port, images, input_ids)
  got = jax.jit(lambda v, x, ids: model.apply(v, x, ids, train=False))(
      back, jnp.asarray(images), jnp.asarray(input_ids, jnp.int32)
  )
  assert set(got) == set(expected)
  assert {f'{side}_attribute_logits' for side in ATTRIBUTE_LABELS} <= set(expected)
  for key, value in expected.items():
    got_leaves, want_leaves = jax.tree.leaves(got[key]), jax.tree.leaves(value)
    assert len(got_leaves) == len(want_leaves), key
    for have, want in zip(got_leaves, want_leaves):
      assert have.shape == want.shape, key
      difference = float(np.max(np.abs(np.asarray(have) - want)))
      assert difference <= TOLERANCE, f'{key}: max abs diff {difference}'
  assert [a.shape for a in expected['image_attribute_logits']] == [(2, 4), (2, 3)]


@pytest.mark.skipif(not os.path.isfile(COMPARE_TOOL), reason='reference tool absent')
@pytest.mark.parametrize(
    'heads, listing',
    [
        (('mlm', 'itm', 'mir'), 'pvlt_tiny_pretrain_state_dict.tsv'),
        (('recognition',), 'pvlt_tiny_recognition_state_dict.tsv'),
    ],
)
def test_full_size_export_matches_the_release_listing(heads, listing, tmp_path, capsys):
  """Full-size pvlt_tiny (vocabulary 30522, L=128, grid 224): names and shapes only, so the
  variables are zeros of the model's abstract shapes (the real init is tested by the CLI)."""
  config = convert.load_config(PRETRAIN_CONFIG, [f'--config.model.heads={heads}'])
  model = build_model(config.model)
  zeros = jax.tree.map(
      lambda leaf: np.zeros(leaf.shape, np.float32), convert.abstract_variables(model, config.model)
  )
  path = str(tmp_path / 'export.pth')
  convert.save_torch_state_dict(convert.variables_to_torch_state_dict(zeros), path)
  spec = importlib.util.spec_from_file_location('compare_state_dict', COMPARE_TOOL)
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  status = tool.main(path, os.path.join(REFERENCE, listing))
  report = capsys.readouterr().out
  assert status == 0, report
  assert '0 missing, 0 unexpected, 0 mis-shaped' in report


# --- Import: strictness, groups, PVT ------------------------------------------------------


@pytest.fixture(scope='module')
def micro():
  """The test suite's tiny config (pvlt_micro, pos grid 32) with all heads, random weights."""
  config = tiny_config(heads=ALL_HEADS)
  model = build_model(config.model)
  variables = random_variables(convert.abstract_variables(model, config.model), seed=2)
  state = convert.variables_to_torch_state_dict(variables)
  init = random_variables(convert.abstract_variables(model, config.model), seed=3)
  return argparse.Namespace(config=config, model=model, variables=variables, state=state, init=init)


def import_micro(micro, state, **kwargs):
  return convert.import_state_dict(
      state, micro.model, micro.config.model, init=micro.init, **kwargs
  )


def test_strict_import_names_every_problem(micro):
  state = dict(micro.state)
  del state['block2.0.attn.q.bias']
  state['block9.0.attn.q.weight'] = torch.zeros(3)
  state['itm_head.linear.weight'] = torch.zeros(3, 32)
  with pytest.raises(convert.ConversionError) as error:
    import_micro(micro, state)
  message = str(error.value)
  assert 'missing (1):\n    block2.0.attn.q.bias' in message
  assert 'unexpected (1):\n    block9.0.attn.q.weight' in message
  assert 'itm_head.linear.weight: file (3, 32) != model (2, 32)' in message


def test_allowed_missing_groups_keep_the_init(micro):
  state = {k: v for k, v in micro.state.items() if 'heads' not in convert.key_groups(k)}
  with pytest.raises(convert.ConversionError, match='t2i_head.conv4.1.running_mean'):
    import_micro(micro, state)
  variables, report = import_micro(micro, state, allow_missing='heads')
  assert report.filled_from_init and all(
      'heads' in convert.key_groups(k) for k in report.filled_from_init
  )
  np.testing.assert_array_equal(
      variables['params']['itm_head']['linear']['kernel'],
      micro.init['params']['itm_head']['linear']['kernel'],
  )
  np.testing.assert_array_equal(
      variables['batch_stats']['t2i_head']['conv4']['1']['var'],
      micro.init['batch_stats']['t2i_head']['conv4']['1']['var'],
  )
  np.testing.assert_array_equal(
      variables['params']['block1']['0']['attn']['q']['kernel'],
      micro.variables['params']['block1']['0']['attn']['q']['kernel'],
  )
  with pytest.raises(convert.ConversionError, match='unknown group'):
    import_micro(micro, state, allow_missing='heads,decoder')


def test_pretraining_checkpoint_into_a_recognition_model(micro):
  config = tiny_config(heads=('recognition',))
  model = build_model(config.model)
  init = random_variables(convert.abstract_variables(model, config.model), seed=4)
  kwargs = dict(allow_missing='recognition', init=init)
  pretrain_state = {
      k: v for k, v in micro.state.items() if 'recognition' not in convert.key_groups(k)
  }
  with pytest.raises(convert.ConversionError, match='unexpected'):
    convert.import_state_dict(pretrain_state, model, config.model, **kwargs)
  variables, report = convert.import_state_dict(
      pretrain_state, model, config.model, allow_unexpected='mlm,itm,mir', **kwargs
  )
  assert 'mlm_head.mlm_decoder.weight' in report.ignored
  assert set(variables['params']) == set(init['params'])


def test_untied_decoder_is_an_error_unless_allowed(micro):
  state = dict(micro.state)
  state['mlm_head.mlm_decoder.weight'] = state['mlm_head.mlm_decoder.weight'] + 1.0
  with pytest.raises(convert.ConversionError, match='differs from text_embeddings'):
    import_micro(micro, state)
  variables, report = import_micro(micro, state, allow_untied_decoder=True)
  assert any('WARNING' in note for note in report.notes)
  np.testing.assert_array_equal(
      variables['params']['text_embeddings']['word_embeddings']['embedding'],
      state['text_embeddings.word_embeddings.weight'].numpy(),
  )


def pvt_state_dict(micro, grid_scale=1):
  """A PVT-v1 classifier state dict of the micro widths: the vision path plus cls_token,
  norm and head; position embeddings stored for ``grid_scale`` x the config's grid."""
  state = {k: v.clone() for k, v in micro.state.items() if 'vision' in convert.key_groups(k)}
  for k in range(1, 5):
    pos = state[f'pos_embed{k}']
    extra = 1 if k == 4 else 0
    side = int(round(np.sqrt(pos.shape[1] - extra))) * grid_scale
    state[f'pos_embed{k}'] = torch.randn(1, side * side + extra, pos.shape[2])
  width = state['pos_embed4'].shape[-1]
  state.update(
      {
          'cls_token': torch.zeros(1, 1, width),
          'norm.weight': torch.ones(width),
          'norm.bias': torch.zeros(width),
          'head.weight': torch.zeros(1000, width),
          'head.bias': torch.zeros(1000),
      }
  )
  return state


def test_pvt_weights_initialise_the_vision_path(micro):
  state = pvt_state_dict(micro)
  assert convert.detect_source(state) == 'pvt'
  variables, report = import_micro(micro, state)
  assert report.source == 'pvt'
  assert sorted(report.ignored) == [
      'cls_token',
      'head.bias',
      'head.weight',
      'norm.bias',
      'norm.weight',
  ]
  params = variables['params']
  np.testing.assert_array_equal(
      params['block3']['0']['mlp']['fc1']['kernel'],
      micro.variables['params']['block3']['0']['mlp']['fc1']['kernel'],
  )
  np.testing.assert_array_equal(params['pos_embed1'], state['pos_embed1'].numpy())
  np.testing.assert_array_equal(
      params['text_embed1']['0']['kernel'], micro.init['params']['text_embed1']['0']['kernel']
  )
  assert not any('vision' in convert.key_groups(k) for k in report.filled_from_init)
  with pytest.raises(convert.ConversionError, match='unexpected'):
    import_micro(micro, state, source='mvlt')  # strict: a release checkpoint has no cls_token


def test_pvt_position_embeddings_are_resized_to_the_stored_grid(micro):
  state = pvt_state_dict(micro, grid_scale=2)  # e.g. PVT's 224 grids into a smaller config
  variables, report = import_micro(micro, state)
  assert len(report.resized) == 4
  params = variables['params']
  side = int(np.sqrt(params['pos_embed1'].shape[1]))
  grid = state['pos_embed1'].reshape(1, 2 * side, 2 * side, -1).permute(0, 3, 1, 2)
  want = torch.nn.functional.interpolate(
      grid, size=(side, side), mode='bilinear', align_corners=False
  )
  np.testing.assert_allclose(
      params['pos_embed1'], want.flatten(2).transpose(1, 2).numpy(), atol=1e-6
  )
  np.testing.assert_array_equal(params['pos_embed4'][:, 0], state['pos_embed4'][:, 0].numpy())


def test_torch_files(micro, tmp_path):
  release_style = str(tmp_path / 'checkpoint.pth')
  torch.save(
      {
          'model': {f'module.{k}': v for k, v in micro.state.items()},
          'epoch': 3,
          'args': argparse.Namespace(lr=1e-4),
      },
      release_style,
  )
  state = convert.load_torch_state_dict(release_style)
  assert set(state) == set(micro.state)
  garbage = tmp_path / 'garbage.pth'
  garbage.write_bytes(b'not a checkpoint')
  with pytest.raises(convert.ConversionError, match='garbage.pth'):
    convert.load_torch_state_dict(str(garbage))
  with pytest.raises(convert.ConversionError, match='no such file'):
    convert.load_torch_state_dict(str(tmp_path / 'absent.pth'))
  not_a_state_dict = str(tmp_path / 'list.pth')
  torch.save([1, 2], not_a_state_dict)
  with pytest.raises(convert.ConversionError, match='neither a state dict'):
    convert.load_torch_state_dict(not_a_state_dict)


# --- Command line --------------------------------------------------------------------------

TINY_OVERRIDES = [
    '--config.model.variant=pvlt_micro',
    '--config.model.image_size=64',
    '--config.model.text_length=16',
    '--config.model.vocab_size=64',
    '--config.model.pos_grid_size=32',
    '--config.model.text_width=32',
    '--config.model.head_width=32',
    '--config.model.mir_channels=8',
]


def test_command_line_round_trip(tmp_path, capsys):
  """to-torch --init -> from-torch -> to-torch --checkpoint gives the same tensors."""
  config_flag = f'--config={PRETRAIN_CONFIG}'
  exported = str(tmp_path / 'init.safetensors')
  assert convert.main(['to-torch', '--init', config_flag, *TINY_OVERRIDES, '--out', exported]) == 0
  checkpoint_dir = str(tmp_path / 'converted')
  assert (
      convert.main(
          ['from-torch', '--torch', exported, config_flag, *TINY_OVERRIDES, '--out', checkpoint_dir]
      )
      == 0
  )
  again = str(tmp_path / 'again.pth')
  assert convert.main(['to-torch', '--checkpoint', checkpoint_dir, '--out', again]) == 0
  first, second = convert.load_torch_state_dict(exported), convert.load_torch_state_dict(again)
  assert set(first) == set(second)
  assert all(torch.equal(first[k], second[k]) for k in first)
  # The init is the model's own, the release's: std 0.02 word table (the tied MLM decoder's
  # init), N(0, 1) position and token-type tables, zero biases, unit LayerNorm scales.
  assert 0.015 < float(first['text_embeddings.word_embeddings.weight'].std()) < 0.025
  assert 0.9 < float(first['text_embeddings.position_embeddings.weight'].std()) < 1.1
  assert float(first['block1.0.attn.q.bias'].abs().max()) == 0.0
  # Strict by default: the same file into a model with another vocabulary fails by name.
  code = convert.main(
      [
          'from-torch',
          '--torch',
          exported,
          config_flag,
          *TINY_OVERRIDES,
          '--config.model.vocab_size=65',
          '--out',
          str(tmp_path / 'x'),
      ]
  )
  error = capsys.readouterr().err
  assert code == 1
  assert 'init.safetensors' in error and 'text_embeddings.word_embeddings.weight' in error


def test_command_line_reports_bad_arguments(tmp_path, capsys):
  assert (
      convert.main(
          ['to-torch', '--checkpoint', str(tmp_path / 'absent'), '--out', str(tmp_path / 'x.pth')]
      )
      == 1
  )
  assert 'absent' in capsys.readouterr().err
  assert (
      convert.main(
          [
              'from-torch',
              '--torch',
              str(tmp_path / 'absent.pth'),
              f'--config={PRETRAIN_CONFIG}',
              '--out',
              str(tmp_path / 'y'),
          ]
      )
      == 1
  )
  assert 'no such file' in capsys.readouterr().err
  with pytest.raises(convert.ConversionError, match='--config.a.b=value'):
    convert.load_config(PRETRAIN_CONFIG, ['--config.model.vocab_size'])
  # absl flags: one `error:` line for each kind of bad input, never a traceback.
  config_flag = f'--config={PRETRAIN_CONFIG}'
  for argv, message in [
      ([], 'no command given'),
      (['to-torch-please', '--init'], "unknown command 'to-torch-please'"),
      (
          ['to-torch', '--init', config_flag, '--torch=a.pth', '--out=x.pth'],
          '--torch: not a flag of to-torch',
      ),
      (['to-torch', '--out=x.pth'], 'either --checkpoint=DIR or --init'),
      (['from-torch', '--torch=a.pth', '--out=y'], 'from-torch needs --config'),
      (['to-torch', '--init', '--seed=one'], 'flag --seed=one'),
      (['to-torch', '--init', '--bogus'], "Unknown command line flag 'bogus'"),
      (
          ['to-torch', '--init', '--config.model.vocab_size=3', config_flag],
          'config overrides come after the file',
      ),
      (
          ['to-torch', '--init', config_flag, '--config.model.nope=3', '--out=x.pth'],
          "--config.model.nope: the config has no field 'nope'",
      ),
      (['to-torch', '--init', f'--config={tmp_path / "absent.py"}', '--out=x.pth'], 'No such file'),
      (
          [
              'to-torch',
              '--init',
              config_flag,
              "--config.model.heads=('captioning',)",
              '--out=x.pth',
          ],
          "unknown heads ['captioning']",
      ),
  ]:
    assert convert.main(argv) == 1, argv
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err and len(err.splitlines()) == 1, err
  assert convert.main(['--help']) == 0
  out = capsys.readouterr().out
  assert 'usage: python -m mvlt_jax.convert to-torch' in out and '--class_names' in out


# --- Recognition class order ---------------------------------------------------------------

RELEASE_ORDER = convert.read_release_class_order()
# A small dataset in its own (sorted, here shuffled) order: release classes plus one class the
# release does not know per level; names differ from the release's in case and whitespace.
DATASET_MAIN = ('Jeans', 'TIES', 'CAPES', 'sweaters', 'SUITS  &  BLAZERS')
DATASET_SUB = (
    'PINS',
    'BOW TIES',
    'HOLOGRAMS',
    'hoodies & zipups',
    'TUXEDOS',
    'SHIRTS',
    'CREWNECKS',
)
RECOGNITION_LEAVES = (('linear', 'kernel'), ('linear', 'bias'), ('linear_bias',))


def dataset_names(source='dataset.json'):
  return convert.ClassNames(main=DATASET_MAIN, sub=DATASET_SUB, source=source)


def test_shipped_release_class_order():
  order = convert.read_release_class_order()
  assert os.path.dirname(order.source) == os.path.dirname(convert.__file__)
  assert len(order.main) == 48 and len(order.sub) == 121
  assert order.main[:3] == ('SHIRTS', 'SWEATERS', 'JEANS') and order.main[-1] == 'BRIEFCASES'
  assert order.sub[:2] == ('SHIRTS', 'HOODIES & ZIPUPS') and order.sub[-1] == 'PINS'
  assert convert.RELEASE_HEAD_ROWS == {'main': 48, 'sub': 122}  # sub row 121 has no name
  reference = os.path.join(REFERENCE, 'release_class_order.txt')
  if os.path.isfile(reference):
    assert convert.read_release_class_order(reference).main == order.main
    assert convert.read_release_class_order(reference).sub == order.sub
    with open(reference, 'rb') as a, open(order.source, 'rb') as b:
      assert a.read() == b.read()


@pytest.mark.parametrize(
    'text, message',
    [
        ('0 SHIRTS\n', ':1: expected a section header'),
        (
            '########## super-category-templete ##########\n0 A\n2 B\n',
            ':3: class index 2, expected 1',
        ),
        ('########## super-category-templete ##########\n0 A\n', "no section ['sub-category"),
        ('########## other ##########\n', "unknown section 'other'"),
        (
            '########## super-category-templete ##########\n0 A\n1  a \n'
            '########## sub-category-templete ##########\n',
            "'A' and 'a' are the same",
        ),
    ],
)
def test_release_class_order_errors_name_the_file(tmp_path, text, message):
  path = tmp_path / 'order.txt'
  path.write_text(text)
  with pytest.raises(convert.ConversionError, match=re.escape(message)) as error:
    convert.read_release_class_order(str(path))
  assert str(path) in str(error.value) and isinstance(error.value, convert.MVLTError)


def test_class_names_from_json_and_prepared_datasets(tmp_path):
  path = tmp_path / 'classes.json'
  path.write_text('{"main": ["A", "B"], "sub": ["x"]}')
  assert convert.read_class_names(str(path)).main == ('A', 'B')
  path.write_text('{"categories": ["A"], "subcategories": ["x", "y"]}')  # a catalog class_file
  assert convert.read_class_names(str(path)).sub == ('x', 'y')
  path.write_text('{"main": ["A"]}')
  with pytest.raises(convert.ConversionError, match='classes.json: expected a JSON object'):
    convert.read_class_names(str(path))
  # TFDS layout DATA_DIR/NAME/VERSION/{category,subcategory}.labels.txt, from any of the three.
  version = tmp_path / 'data' / 'fashion_gen' / '1.0.0'
  version.mkdir(parents=True)
  (version / 'category.labels.txt').write_text('BAGS\nTOPS\n')
  (version / 'subcategory.labels.txt').write_text('TOTE BAGS\nPOLOS\nT-SHIRTS\n')
  for directory in (version, version.parent, version.parent.parent):
    names = convert.read_class_names(str(directory))
    assert names.main == ('BAGS', 'TOPS') and names.sub == ('TOTE BAGS', 'POLOS', 'T-SHIRTS')
    assert names.source == str(version)
  other = tmp_path / 'data' / 'catalog' / '1.0.0'
  other.mkdir(parents=True)
  for filename in ('category.labels.txt', 'subcategory.labels.txt'):
    (other / filename).write_text('A\n')
  with pytest.raises(convert.ConversionError, match='several prepared datasets'):
    convert.read_class_names(str(tmp_path / 'data'))
  with pytest.raises(convert.ConversionError, match='no prepared dataset found'):
    convert.read_class_names(
        str(tmp_path / 'data' / 'fashion_gen' / '1.0.0' / '..' / '..' / '..')
    )  # three levels above: too far
  with pytest.raises(convert.ConversionError, match='no such file or directory'):
    convert.read_class_names(str(tmp_path / 'absent.json'))


@pytest.fixture(scope='module')
def recognition():
  """The tiny recognition model (5 main, 7 sub classes: the dataset's) with random weights."""
  config = tiny_config(heads=('recognition',))
  model = build_model(config.model)
  abstract = convert.abstract_variables(model, config.model)
  return argparse.Namespace(
      config=config,
      model=model,
      variables=random_variables(abstract, seed=5),
      init=random_variables(abstract, seed=6),
  )


def head_rows(variables, head):
  """{leaves: [classes, ...]} of a JAX recognition head (kernels transposed: class axis first)."""
  rows = {}
  for leaves in RECOGNITION_LEAVES:
    value = variables['params'][head]
    for leaf in leaves:
      value = value[leaf]
    value = np.asarray(value)
    rows[leaves] = value.T if leaves[-1] == 'kernel' else value
  return rows


def test_recognition_rows_round_trip_through_the_release_order(recognition):
  mapping = convert.make_class_mapping(dataset_names())
  state, notes = convert.export_state_dict(recognition.variables, class_mapping=mapping, seed=1)
  convert.check_against_port(state, recognition.config, mapping)
  assert state['sup_cls_head.linear.weight'].shape == (48, 32)
  assert state['sub_cls_head.linear_bias'].shape == (122,)
  release = {'main': RELEASE_ORDER.main, 'sub': RELEASE_ORDER.sub}
  dataset = {'main': DATASET_MAIN, 'sub': DATASET_SUB}
  unknown = {'main': 'CAPES', 'sub': 'HOLOGRAMS'}
  for level, head in convert.CLASS_HEADS.items():
    rows = head_rows(recognition.variables, head)
    keys = [convert.normalize_class_name(n) for n in release[level]]
    for j, name in enumerate(dataset[level]):
      if name == unknown[level]:
        continue
      i = keys.index(convert.normalize_class_name(name))
      np.testing.assert_array_equal(
          state[f'{head}.linear.weight'][i], rows[('linear', 'kernel')][j]
      )
      np.testing.assert_array_equal(state[f'{head}.linear.bias'][i], rows[('linear', 'bias')][j])
      np.testing.assert_array_equal(state[f'{head}.linear_bias'][i], rows[('linear_bias',)][j])
    # Release rows without a dataset class (and the unnamed sub row 121): the port's init.
    mapped = {
        keys.index(convert.normalize_class_name(n)) for n in dataset[level] if n != unknown[level]
    }
    fresh = [i for i in range(convert.RELEASE_HEAD_ROWS[level]) if i not in mapped]
    assert float(np.abs(state[f'{head}.linear.bias'][fresh]).max()) == 0.0
    assert float(np.abs(state[f'{head}.linear_bias'][fresh]).max()) == 0.0
    assert 0.01 < float(state[f'{head}.linear.weight'][fresh].std()) < 0.03
  assert any('CAPES' in note and 'dropped' in note for note in notes)
  assert any('121 (unnamed)' in note and 'fresh init' in note for note in notes)
  again, _ = convert.export_state_dict(recognition.variables, class_mapping=mapping, seed=1)
  assert all(np.array_equal(state[k], again[k]) for k in state)  # the fresh rows: by seed

  # Back: release order -> the dataset's; the unknown classes keep the JAX init.
  back, report = convert.import_state_dict(
      state,
      recognition.model,
      recognition.config.model,
      class_mapping=mapping,
      init=recognition.init,
  )
  for level, head in convert.CLASS_HEADS.items():
    want, got = head_rows(recognition.variables, head), head_rows(back, head)
    init = head_rows(recognition.init, head)
    j = dataset[level].index(unknown[level])
    for leaves in RECOGNITION_LEAVES:
      known = [k for k in range(len(dataset[level])) if k != j]
      np.testing.assert_array_equal(got[leaves][known], want[leaves][known])
      np.testing.assert_array_equal(got[leaves][j], init[leaves][j])
  summary = report.summary()
  assert 'release does not know (fresh init): CAPES' in summary
  assert 'dropped): 0 SHIRTS' in summary and '121 (unnamed)' in summary
  # Everything but the recognition heads is untouched.
  np.testing.assert_array_equal(
      back['params']['block1']['0']['attn']['q']['kernel'],
      recognition.variables['params']['block1']['0']['attn']['q']['kernel'],
  )


def test_recognition_rows_without_class_names_warn(recognition):
  state, notes = convert.export_state_dict(recognition.variables)
  assert notes == [convert.NO_CLASS_NAMES_WARNING] and 'WARNING' in notes[0]
  assert state['sup_cls_head.linear.weight'].shape == (5, 32)  # row i -> row i
  back, report = convert.import_state_dict(state, recognition.model, recognition.config.model)
  assert convert.NO_CLASS_NAMES_WARNING in report.summary()
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, back, recognition.variables)))


def test_class_mapping_errors(recognition):
  too_many = convert.ClassNames(main=DATASET_MAIN + ('GOWNS',), sub=DATASET_SUB, source='six.json')
  mapping = convert.make_class_mapping(too_many)
  with pytest.raises(
      convert.ConversionError,
      match='six.json lists 6 main classes but the ' "model's sup_cls_head has 5 outputs",
  ):
    convert.export_state_dict(recognition.variables, class_mapping=mapping)
  state, _ = convert.export_state_dict(
      recognition.variables, class_mapping=convert.make_class_mapping(dataset_names())
  )
  with pytest.raises(convert.ConversionError, match='num_main_classes'):
    convert.import_state_dict(
        state,
        recognition.model,
        recognition.config.model,
        class_mapping=mapping,
        init=recognition.init,
    )
  short = {k: (v[:10] if k.startswith('sup_cls_head.linear') else v) for k, v in state.items()}
  with pytest.raises(convert.ConversionError, match='10 rows but .* names 48 main classes'):
    convert.import_state_dict(
        short,
        recognition.model,
        recognition.config.model,
        class_mapping=convert.make_class_mapping(dataset_names()),
    )
  with pytest.raises(convert.ConversionError, match='are the same after normalising'):
    convert.ClassNames(main=('Bags', 'BAGS'), sub=(), source='x.json')


def test_command_line_maps_classes(tmp_path, capsys):
  classes = tmp_path / 'classes.json'
  classes.write_text(json.dumps({'main': list(DATASET_MAIN), 'sub': list(DATASET_SUB)}))
  # Class counts 0 ("from the dataset", as configs/finetune_recognition.py): --class_names
  # gives them (5 and 7).
  config_flags = [
      f'--config={PRETRAIN_CONFIG}',
      *TINY_OVERRIDES,
      "--config.model.heads=('recognition',)",
      '--config.model.num_main_classes=0',
      '--config.model.num_sub_classes=0',
  ]
  exported = str(tmp_path / 'release_order.pth')
  assert (
      convert.main(
          ['to-torch', '--init', *config_flags, '--class_names', str(classes), '--out', exported]
      )
      == 0
  )
  out = capsys.readouterr().out
  assert 'main classes (sup_cls_head): 4 of the 48 release rows' in out and 'CAPES' in out
  state = convert.load_torch_state_dict(exported)
  assert tuple(state['sub_cls_head.linear.weight'].shape) == (122, 32)
  converted = str(tmp_path / 'converted')
  assert (
      convert.main(
          [
              'from-torch',
              '--torch',
              exported,
              *config_flags,
              '--class_names',
              str(classes),
              '--out',
              converted,
          ]
      )
      == 0
  )
  assert 'release does not know (fresh init): HOLOGRAMS' in capsys.readouterr().out
  assert convert.load_checkpoint_variables(converted)['params']['sub_cls_head'][
      'linear_bias'
  ].shape == (7,)
  # Without class names: the 48 rows do not fit the 5-class model.
  assert (
      convert.main(
          [
              'from-torch',
              '--torch',
              exported,
              *config_flags,
              '--config.model.num_main_classes=5',
              '--config.model.num_sub_classes=7',
              '--out',
              str(tmp_path / 'x'),
          ]
      )
      == 1
  )
  assert 'sup_cls_head.linear.weight: file (48, 32) != model (5, 32)' in capsys.readouterr().err
  # ... and a clear warning when the rows are copied as they are.
  assert (
      convert.main(
          ['to-torch', '--checkpoint', converted, '--out', str(tmp_path / 'same_order.pth')]
      )
      == 0
  )
  assert 'WARNING: no class names given' in capsys.readouterr().out
  assert (
      convert.main(
          [
              'to-torch',
              '--checkpoint',
              converted,
              '--class_names',
              str(tmp_path / 'absent.json'),
              '--out',
              str(tmp_path / 'y.pth'),
          ]
      )
      == 1
  )
  assert 'absent.json: no such file' in capsys.readouterr().err


# --- init_from: PyTorch files converted on the fly ----------------------------------------


def test_load_init_variables_from_pvt_weights(micro, tmp_path):
  state = pvt_state_dict(micro)
  path = str(tmp_path / 'pvt_micro.pth')
  torch.save(state, path)  # a bare state dict, as pvt_tiny.pth
  variables, description = convert.load_init_variables(path, micro.config)
  converted, _ = import_micro(micro, state)
  vision = {
      'pos_embed1',
      'pos_embed2',
      'pos_embed3',
      'pos_embed4',
      'patch_embed1',
      'patch_embed2',
      'patch_embed3',
      'patch_embed4',
      'block1',
      'block2',
      'block3',
      'block4',
  }
  assert set(variables) == {'params', 'batch_stats'}
  assert set(variables['params']) == vision and variables['batch_stats'] == {}
  want = {k: converted['params'][k] for k in vision}
  assert jax.tree.structure(variables['params']) == jax.tree.structure(want)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, variables['params'], want)))
  assert description.startswith(f'{path} (PVT-v1 ImageNet classifier): ')
  assert '(vision)' in description and 'cls_token' in description
  assert 'not in the file (keep the fresh init): text, mlm, itm, mir, recognition, batch_stats' in (
      description
  )
  # The same file through the .safetensors reader.
  safetensors_path = str(tmp_path / 'pvt_micro.safetensors')
  convert.save_torch_state_dict(state, safetensors_path)
  again, _ = convert.load_init_variables(safetensors_path, micro.config.model)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, again['params'], want)))


def test_training_init_from_takes_pvt_weights_and_keeps_the_rest_fresh(micro, tmp_path, capsys):
  """train.load_init_from with a PVT .pth: the vision path is the file's, everything else
  keeps the run's fresh init, and no 'from scratch' warning follows."""
  from mvlt_jax import train  # pylint: disable=import-outside-toplevel
  from mvlt_jax.train_state import TrainState  # pylint: disable=import-outside-toplevel

  state = pvt_state_dict(micro)
  path = str(tmp_path / 'pvt_micro.pth')
  torch.save(state, path)
  config = tiny_config(heads=('mlm', 'itm', 'mir'))
  config.init_from = path
  model = build_model(config.model)
  fresh = random_variables(convert.abstract_variables(model, config.model), seed=5)
  run_state = TrainState(
      step=jnp.zeros((), jnp.int32),
      params=fresh['params'],
      batch_stats=fresh['batch_stats'],
      opt_state=(),
      rng=jnp.zeros(2),
  )
  new_state, loaded = train.load_init_from(run_state, config)
  converted, _ = import_micro(micro, state)
  assert 'patch_embed1' in loaded and 'text_embeddings' not in loaded
  np.testing.assert_array_equal(
      new_state.params['block1']['0']['attn']['q']['kernel'],
      converted['params']['block1']['0']['attn']['q']['kernel'],
  )
  np.testing.assert_array_equal(
      new_state.params['text_embeddings']['word_embeddings']['embedding'],
      fresh['params']['text_embeddings']['word_embeddings']['embedding'],
  )
  assert f'init_from {path}: {path} (PVT-v1 ImageNet classifier)' in capsys.readouterr().out
  train.warn_if_vision_from_scratch(config, loaded)
  assert 'warning:' not in capsys.readouterr().out


def test_load_init_variables_from_an_mvlt_state_dict(micro, tmp_path):
  path = str(tmp_path / 'pretrain.pth')
  convert.save_torch_state_dict(
      {k: v for k, v in micro.state.items() if 'recognition' not in convert.key_groups(k)}, path
  )
  # Into a recognition model: the pre-training heads are ignored, the recognition heads
  # are not in the file (left out: training keeps their fresh init).
  config = tiny_config(heads=('recognition',))
  variables, description = convert.load_init_variables(path, config)
  assert 'sup_cls_head' not in variables['params'] and 'itm_head' not in variables['params']
  assert variables['batch_stats'] == {}
  np.testing.assert_array_equal(
      variables['params']['text_embeddings']['word_embeddings']['embedding'],
      micro.variables['params']['text_embeddings']['word_embeddings']['embedding'],
  )
  assert '(MVLT state dict)' in description and '(vision, text)' in description
  assert 'ignored: ' in description and 't2i_head' in description
  # Strict outside the heads; a module held only in part is an error.
  broken = str(tmp_path / 'broken.pth')
  convert.save_torch_state_dict(
      {k: v for k, v in micro.state.items() if k != 'block2.0.attn.q.bias'}, broken
  )
  with pytest.raises(
      convert.ConversionError, match=r'(?s)broken.pth: .*missing \(1\):\n    block2.0.attn.q.bias'
  ):
    convert.load_init_variables(broken, micro.config)
  partial = str(tmp_path / 'partial.pth')
  convert.save_torch_state_dict(
      {k: v for k, v in micro.state.items() if k != 'itm_head.linear.bias'}, partial
  )
  with pytest.raises(convert.ConversionError, match='partial.pth: holds only part'):
    convert.load_init_variables(partial, micro.config)


def test_load_init_variables_from_a_checkpoint_directory(micro, tmp_path):
  path = str(tmp_path / 'converted')
  convert.save_converted_checkpoint(micro.variables, micro.config, path)
  variables, description = convert.load_init_variables(path, micro.config)
  assert description == f'{path}: mvlt_jax checkpoint, step 0'
  assert all(
      jax.tree.leaves(
          jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), b), variables, micro.variables)
      )
  )
  with pytest.raises(convert.ConversionError, match='No checkpoint directory'):
    convert.load_init_variables(str(tmp_path / 'absent'), micro.config)
  other = tmp_path / 'weights.npz'
  other.write_bytes(b'')
  with pytest.raises(convert.ConversionError, match='weights.npz is a file but not a PyTorch'):
    convert.load_init_variables(str(other), micro.config)


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(REFERENCE, 'pvt_v1_tiny_imagenet_state_dict.tsv')),
    reason='reference listings absent',
)
def test_pvt_tiny_listing_initialises_the_pretraining_model(tmp_path):
  """A file of pvt_tiny.pth's names and shapes (zeros) as init_from of configs/pretrain.py."""
  state = {}
  with open(os.path.join(REFERENCE, 'pvt_v1_tiny_imagenet_state_dict.tsv')) as f:
    for line in f:
      if line.startswith('#') or not line.strip():
        continue
      name, shape, _ = line.rstrip('\n').split('\t')
      state[name] = torch.zeros(tuple(int(d) for d in shape.strip('()').split(',') if d.strip()))
  path = str(tmp_path / 'pvt_tiny.pth')
  torch.save(state, path)
  config = convert.load_config(PRETRAIN_CONFIG)
  variables, description = convert.load_init_variables(path, config)
  model = build_model(config.model)
  abstract = convert.abstract_variables(model, config.model)['params']
  vision = {k for k in abstract if 'vision' in convert.key_groups(k)}
  assert set(variables['params']) == vision and variables['batch_stats'] == {}
  assert jax.tree.map(np.shape, variables['params']) == jax.tree.map(
      lambda leaf: leaf.shape, {k: abstract[k] for k in vision}
  )
  assert 'PVT-v1 ImageNet classifier' in description and 'resized' not in description
  ignored = {'cls_token', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias'}
  assert f'{len(state) - len(ignored)} tensors loaded (vision)' in description
