"""PyTorch <-> JAX conversion: name mapping, parity of the two models, files, CLI, errors.

Weights are random (no downloads). Parity uses pvlt_tiny (real widths, depths and grids at
224 and 256) with a 1000-word vocabulary and L=16 so that CPU compiles stay short.
"""
import argparse
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from flax import traverse_util  # noqa: E402

from mvlt_jax import convert, torch_port  # noqa: E402
from mvlt_jax.models import VARIANTS, build_model  # noqa: E402
from tests.conftest import SHARED, tiny_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN_CONFIG = os.path.join(REPO, 'configs', 'pretrain.py')
REFERENCE = os.path.join(SHARED, 'reference')
COMPARE_TOOL = os.path.join(SHARED, 'tools', 'compare_state_dict.py')
ALL_HEADS = ('mlm', 'itm', 'mir', 'recognition')
PARITY_OVERRIDES = ['--config.model.dtype=float32', '--config.model.vocab_size=1000',
                    '--config.model.text_length=16', f'--config.model.heads={ALL_HEADS}']
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
  return argparse.Namespace(config=config, model=model, variables=variables, port=port.eval(),
                            apply=apply)


def batch(config, size, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.random((2, size, size, 3), dtype=np.float32)  # NHWC
  input_ids = rng.integers(0, config.model.vocab_size, (2, config.model.text_length))
  return images, input_ids


def torch_outputs(port, images, input_ids):
  with torch.no_grad():
    outputs = port(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(input_ids))
  outputs = {k: v.numpy() for k, v in outputs.items()}
  outputs['reconstruction'] = outputs['reconstruction'].transpose(0, 2, 3, 1)  # -> NHWC
  return outputs


def test_variant_tables_agree():
  for name, spec in VARIANTS.items():
    assert torch_port.VARIANTS[name] == dict(
        embed_dims=spec.embed_dims, num_heads=spec.num_heads, mlp_ratios=spec.mlp_ratios,
        depths=spec.depths, sr_ratios=spec.sr_ratios), name


@pytest.mark.parametrize('flat_key, name', [
    (('params', 'block1', '0', 'attn', 'q', 'kernel'), 'block1.0.attn.q.weight'),
    (('params', 'text_embed1', '0', 'kernel'), 'text_embed1.0.weight'),
    (('params', 'text_embed1', '1', 'scale'), 'text_embed1.1.weight'),
    (('params', 't2i_head', 'reduction1', '0', 'kernel'), 't2i_head.reduction1.0.weight'),
    (('batch_stats', 't2i_head', 'reduction1', '1', 'mean'), 't2i_head.reduction1.1.running_mean'),
    (('batch_stats', 't2i_head', 'reduction1', '1', 'var'), 't2i_head.reduction1.1.running_var'),
    (('params', 'text_embeddings', 'word_embeddings', 'embedding'),
     'text_embeddings.word_embeddings.weight'),
    (('params', 'pos_embed4'), 'pos_embed4'),
    (('params', 'itm_head', 'linear_bias'), 'itm_head.linear_bias'),
])
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
  np.testing.assert_array_equal(state['mlm_head.mlm_decoder.weight'],
                                state['text_embeddings.word_embeddings.weight'])
  assert state['t2i_head.conv4.1.num_batches_tracked'].dtype == torch.int64


@pytest.mark.parametrize('size', [224, 256])
def test_jax_and_port_agree(parity, size):
  images, input_ids = batch(parity.config, size)
  expected = torch_outputs(parity.port, images, input_ids)
  got = parity.apply(parity.variables, jnp.asarray(images), jnp.asarray(input_ids, jnp.int32))
  assert set(got) == set(expected) == {'itm_logits', 'mlm_logits', 'reconstruction',
                                       'main_logits', 'sub_logits'}
  for key, value in expected.items():
    assert got[key].shape == value.shape, key
    difference = float(np.max(np.abs(np.asarray(got[key]) - value)))
    assert difference <= TOLERANCE, f'{key} at {size}: max abs diff {difference}'
  assert expected['reconstruction'].shape == (2, size, size, 3)


def test_jax_and_port_agree_in_training_mode():
  """BatchNorm with batch statistics and its running-average update (drop rates 0)."""
  config = convert.load_config(PRETRAIN_CONFIG, PARITY_OVERRIDES + [
      "--config.model.heads=('mir',)", '--config.model.variant=pvlt_micro',
      '--config.model.drop_path_rate=0.0', '--config.model.text_dropout_rate=0.0'])
  model = build_model(config.model)
  variables = random_variables(convert.abstract_variables(model, config.model), seed=1)
  port = torch_port.MVLT(torch_port.config_from_model_config(config.model)).train()
  port.load_state_dict(convert.variables_to_torch_state_dict(variables), strict=True)
  images, input_ids = batch(config, 64)
  expected = torch_outputs(port, images, input_ids)
  train_apply = jax.jit(lambda v, images, ids: model.apply(
      v, images, ids, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.PRNGKey(0)}))
  got, updates = train_apply(variables, jnp.asarray(images), jnp.asarray(input_ids, jnp.int32))
  np.testing.assert_allclose(got['reconstruction'], expected['reconstruction'], atol=TOLERANCE)
  old = convert.variables_to_numpy_state_dict(variables)
  new = convert.variables_to_numpy_state_dict({'params': variables['params'], **updates})
  torch_state = port.state_dict()
  stage2_grid = 64 // 8
  # Grid of each BatchNorm of the decoder, as a divisor of the stage-2 grid.
  divisors = dict(reduction1=1, reduction2=2, reduction3=4, conv_upsample1=2, conv_upsample2=1,
                  conv_upsample3=1, conv_upsample4=2, conv_upsample5=1, conv_concat2=2,
                  conv_concat3=1, conv4=1)
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
        jax.tree.leaves(parity.variables))
  # The release's .pth layout: {'model': state_dict} (plus pickled argparse arguments).
  assert set(torch.load(str(tmp_path / 'model.pth'), weights_only=True)) == {'model'}


@pytest.mark.skipif(not os.path.isfile(COMPARE_TOOL), reason='reference tool absent')
@pytest.mark.parametrize('heads, listing', [
    (('mlm', 'itm', 'mir'), 'pvlt_tiny_pretrain_state_dict.tsv'),
    (('recognition',), 'pvlt_tiny_recognition_state_dict.tsv'),
])
def test_full_size_export_matches_the_release_listing(heads, listing, tmp_path, capsys):
  """Full-size pvlt_tiny (vocabulary 30522, L=128, grid 224): names and shapes only, so the
  variables are zeros of the model's abstract shapes (the real init is tested by the CLI)."""
  config = convert.load_config(PRETRAIN_CONFIG, [f'--config.model.heads={heads}'])
  model = build_model(config.model)
  zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32),
                       convert.abstract_variables(model, config.model))
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
  return argparse.Namespace(config=config, model=model, variables=variables, state=state,
                            init=init)


def import_micro(micro, state, **kwargs):
  return convert.import_state_dict(state, micro.model, micro.config.model, init=micro.init,
                                   **kwargs)


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
  assert report.filled_from_init and all('heads' in convert.key_groups(k)
                                         for k in report.filled_from_init)
  np.testing.assert_array_equal(variables['params']['itm_head']['linear']['kernel'],
                                micro.init['params']['itm_head']['linear']['kernel'])
  np.testing.assert_array_equal(variables['batch_stats']['t2i_head']['conv4']['1']['var'],
                                micro.init['batch_stats']['t2i_head']['conv4']['1']['var'])
  np.testing.assert_array_equal(variables['params']['block1']['0']['attn']['q']['kernel'],
                                micro.variables['params']['block1']['0']['attn']['q']['kernel'])
  with pytest.raises(convert.ConversionError, match='unknown group'):
    import_micro(micro, state, allow_missing='heads,decoder')


def test_pretraining_checkpoint_into_a_recognition_model(micro):
  config = tiny_config(heads=('recognition',))
  model = build_model(config.model)
  init = random_variables(convert.abstract_variables(model, config.model), seed=4)
  kwargs = dict(allow_missing='recognition', init=init)
  pretrain_state = {k: v for k, v in micro.state.items() if 'recognition' not in
                    convert.key_groups(k)}
  with pytest.raises(convert.ConversionError, match='unexpected'):
    convert.import_state_dict(pretrain_state, model, config.model, **kwargs)
  variables, report = convert.import_state_dict(pretrain_state, model, config.model,
                                                allow_unexpected='mlm,itm,mir', **kwargs)
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
      state['text_embeddings.word_embeddings.weight'].numpy())


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
  state.update({'cls_token': torch.zeros(1, 1, width), 'norm.weight': torch.ones(width),
                'norm.bias': torch.zeros(width), 'head.weight': torch.zeros(1000, width),
                'head.bias': torch.zeros(1000)})
  return state


def test_pvt_weights_initialise_the_vision_path(micro):
  state = pvt_state_dict(micro)
  assert convert.detect_source(state) == 'pvt'
  variables, report = import_micro(micro, state)
  assert report.source == 'pvt'
  assert sorted(report.ignored) == ['cls_token', 'head.bias', 'head.weight', 'norm.bias',
                                    'norm.weight']
  params = variables['params']
  np.testing.assert_array_equal(params['block3']['0']['mlp']['fc1']['kernel'],
                                micro.variables['params']['block3']['0']['mlp']['fc1']['kernel'])
  np.testing.assert_array_equal(params['pos_embed1'], state['pos_embed1'].numpy())
  np.testing.assert_array_equal(params['text_embed1']['0']['kernel'],
                                micro.init['params']['text_embed1']['0']['kernel'])
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
  want = torch.nn.functional.interpolate(grid, size=(side, side), mode='bilinear',
                                         align_corners=False)
  np.testing.assert_allclose(params['pos_embed1'], want.flatten(2).transpose(1, 2).numpy(),
                             atol=1e-6)
  np.testing.assert_array_equal(params['pos_embed4'][:, 0], state['pos_embed4'][:, 0].numpy())


def test_torch_files(micro, tmp_path):
  release_style = str(tmp_path / 'checkpoint.pth')
  torch.save({'model': {f'module.{k}': v for k, v in micro.state.items()}, 'epoch': 3,
              'args': argparse.Namespace(lr=1e-4)}, release_style)
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

TINY_OVERRIDES = ['--config.model.variant=pvlt_micro', '--config.model.image_size=64',
                  '--config.model.text_length=16', '--config.model.vocab_size=64',
                  '--config.model.pos_grid_size=32', '--config.model.text_width=32',
                  '--config.model.head_width=32', '--config.model.mir_channels=8']


def test_command_line_round_trip(tmp_path, capsys):
  """to-torch --init -> from-torch -> to-torch --checkpoint gives the same tensors."""
  config_flag = f'--config={PRETRAIN_CONFIG}'
  exported = str(tmp_path / 'init.safetensors')
  assert convert.main(['to-torch', '--init', config_flag, *TINY_OVERRIDES, '--out', exported]) == 0
  checkpoint_dir = str(tmp_path / 'converted')
  assert convert.main(['from-torch', '--torch', exported, config_flag, *TINY_OVERRIDES,
                       '--out', checkpoint_dir]) == 0
  again = str(tmp_path / 'again.pth')
  assert convert.main(['to-torch', '--checkpoint', checkpoint_dir, '--out', again]) == 0
  first, second = convert.load_torch_state_dict(exported), convert.load_torch_state_dict(again)
  assert set(first) == set(second)
  assert all(torch.equal(first[k], second[k]) for k in first)
  # The init is the model's own: N(0, 1) word table, zero biases, unit LayerNorm scales.
  assert 0.9 < float(first['text_embeddings.word_embeddings.weight'].std()) < 1.1
  assert float(first['block1.0.attn.q.bias'].abs().max()) == 0.0
  # Strict by default: the same file into a model with another vocabulary fails by name.
  code = convert.main(['from-torch', '--torch', exported, config_flag, *TINY_OVERRIDES,
                       '--config.model.vocab_size=65', '--out', str(tmp_path / 'x')])
  error = capsys.readouterr().err
  assert code == 1
  assert 'init.safetensors' in error and 'text_embeddings.word_embeddings.weight' in error


def test_command_line_reports_bad_arguments(tmp_path, capsys):
  assert convert.main(['to-torch', '--checkpoint', str(tmp_path / 'absent'),
                       '--out', str(tmp_path / 'x.pth')]) == 1
  assert 'absent' in capsys.readouterr().err
  assert convert.main(['from-torch', '--torch', str(tmp_path / 'absent.pth'),
                       f'--config={PRETRAIN_CONFIG}', '--out', str(tmp_path / 'y')]) == 1
  assert 'no such file' in capsys.readouterr().err
  with pytest.raises(convert.ConversionError, match='--config.a.b=value'):
    convert.load_config(PRETRAIN_CONFIG, ['--config.model.vocab_size'])
