"""The MVLT model: shapes, parameter counts, determinism, dtypes, MLM gathering, train flag."""

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import pretrain
from mvlt_jax import losses, masking, summary
from mvlt_jax.models import build_model
from mvlt_jax.models.resize import interpolation_matrix, resize_bilinear
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIAL_IDS = (0, 1, 2, 3, 4)  # [PAD], [UNK], [CLS], [SEP], [MASK]
MASK_ID = 4


def _abstract_forward(model_config, image_size, batch=2):
  model = build_model(model_config)
  images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.float32)
  ids = jax.ShapeDtypeStruct((batch, model_config.text_length), jnp.int32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}

  def run(images, ids):
    variables = model.init(rngs, images, ids)
    return model.apply(variables, images, ids, return_features=True)

  return jax.eval_shape(run, images, ids)


@pytest.mark.parametrize('image_size,grids', [(224, (56, 28, 14, 7)), (256, (64, 32, 16, 8))])
def test_stage_shapes_pvlt_tiny(image_size, grids):
  config = pretrain.get_config()
  config.model.heads = ('mlm', 'itm', 'mir', 'recognition')
  out = _abstract_forward(config.model, image_size)
  dims = (64, 128, 320, 512)
  assert [m.shape for m in out['stage_maps']] == [(2, g, g, d) for g, d in zip(grids, dims)]
  assert out['text_tokens'].shape == (2, 128, 512)
  assert out['itm_logits'].shape == (2, 2)
  assert out['mlm_logits'].shape == (2, 128, 30522)
  assert out['reconstruction'].shape == (2, image_size, image_size, 3)
  assert out['main_logits'].shape == (2, 48)
  assert out['sub_logits'].shape == (2, 122)


def test_parameter_counts_match_release():
  config = pretrain.get_config()
  params = summary.abstract_variables(config.model)['params']
  assert summary.count_parameters(params) == 40_025_089
  config.model.heads = ('recognition',)
  params = summary.abstract_variables(config.model)['params']
  assert summary.count_parameters(params) == 37_870_164


def test_variants_differ_only_in_depth():
  config = pretrain.get_config()
  counts = {}
  for variant in ('pvlt_tiny', 'pvlt_small', 'pvlt_medium', 'pvlt_large'):
    config.model.variant = variant
    params = summary.abstract_variables(config.model)['params']
    counts[variant] = summary.count_parameters(params)
    assert params['pos_embed1'].shape == (1, 3136, 64)
  assert counts['pvlt_tiny'] < counts['pvlt_small'] < counts['pvlt_medium'] < counts['pvlt_large']
  assert len(params['block3']) == 27


def test_summary_command_prints_total():
  result = subprocess.run(
      [
          sys.executable,
          'main.py',
          '--config=configs/pretrain.py',
          '--workdir=/tmp/unused',
          '--config.task=summary',
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 0, result.stderr
  assert 'parameters: 40,025,089' in result.stdout
  assert 'block1' in result.stdout and 't2i_head' in result.stdout


@pytest.fixture(scope='module')
def tiny_setup():
  config = tiny_config(heads=('mlm', 'itm', 'mir', 'recognition'))
  model = build_model(config.model)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(2, 64, 64, 3)), jnp.float32)
  input_ids = jnp.asarray(rng.integers(5, 64, size=(2, 16)), jnp.int32)
  input_ids = input_ids.at[:, 0].set(2).at[:, 12].set(3).at[:, 13:].set(0)
  # An 'rbg' key compiles the initialisers several times faster on CPU than threefry.
  variables = jax.jit(model.init)({'params': jax.random.key(0, impl='rbg')}, images, input_ids)
  return config, model, variables, images, input_ids


def test_jit_forward_is_deterministic(tiny_setup):
  _, model, variables, images, input_ids = tiny_setup
  forward = jax.jit(functools.partial(model.apply, train=False))
  first = forward(variables, images, input_ids)
  second = forward(variables, images, input_ids)
  for key in ('itm_logits', 'mlm_logits', 'reconstruction', 'main_logits', 'sub_logits'):
    assert np.all(np.isfinite(first[key])), key
    np.testing.assert_array_equal(first[key], second[key])
  assert first['mlm_logits'].shape == (2, 16, 64)
  assert first['reconstruction'].shape == (2, 64, 64, 3)


def test_bfloat16_forward_close_to_float32(tiny_setup):
  config, model, variables, images, input_ids = tiny_setup
  config = tiny_config(heads=('mlm', 'itm', 'mir', 'recognition'))
  config.model.dtype = 'bfloat16'
  model_bf16 = build_model(config.model)
  out32 = jax.jit(model.apply)(variables, images, input_ids)
  out16 = jax.jit(model_bf16.apply)(variables, images, input_ids)
  for key in ('itm_logits', 'mlm_logits', 'reconstruction', 'main_logits'):
    assert out16[key].dtype == jnp.float32  # heads return float32 for the losses
    ref = np.asarray(out32[key])
    err = np.max(np.abs(np.asarray(out16[key]) - ref)) / (np.max(np.abs(ref)) + 1e-6)
    assert err < 0.05, (key, err)
  # Parameters stay float32 whatever the compute dtype.
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables['params']))


def test_masked_position_mlm_loss_equals_full_loss(tiny_setup):
  config, model, variables, images, input_ids = tiny_setup
  tokens = masking.mask_tokens(
      jax.random.key(3),
      input_ids,
      vocab_size=64,
      special_ids=SPECIAL_IDS,
      mask_id=MASK_ID,
      prob=0.5,
      mask_frac=0.8,
      random_frac=0.1,
      max_predictions=6,
  )
  assert int(tokens.weights.sum()) > 0
  apply = jax.jit(model.apply)
  full = apply(variables, images, tokens.input_ids)['mlm_logits']
  gathered = apply(variables, images, tokens.input_ids, mlm_positions=tokens.positions)[
      'mlm_logits'
  ]
  assert gathered.shape == (2, 6, 64)
  loss_full = losses.mlm_loss_full(full, tokens.full_labels)
  loss_gathered = losses.mlm_loss(gathered, tokens.labels, tokens.weights)
  np.testing.assert_allclose(loss_gathered, loss_full, rtol=1e-5)


def test_train_flag_switches_stochastic_depth_and_dropout(tiny_setup):
  config = tiny_config()
  config.model.drop_path_rate = 0.5
  config.model.text_dropout_rate = 0.5
  model = build_model(config.model)
  _, _, variables, images, input_ids = tiny_setup
  variables = {
      'params': {
          k: v for k, v in variables['params'].items() if not k.startswith(('sup_', 'sub_'))
      },
      'batch_stats': variables['batch_stats'],
  }

  @functools.partial(jax.jit, static_argnums=0)
  def itm(train, seed):
    out = model.apply(
        variables,
        images,
        input_ids,
        train=train,
        rngs={'dropout': jax.random.key(seed)},
        mutable=['batch_stats'],
    )
    return out[0]['itm_logits']

  np.testing.assert_array_equal(itm(False, 0), itm(False, 1))
  assert not np.allclose(itm(True, 0), itm(True, 1))


def test_resize_matches_pytorch_semantics():
  torch = pytest.importorskip('torch')
  x = np.random.default_rng(0).normal(size=(1, 7, 5, 3)).astype(np.float32)
  for out_hw in ((8, 8), (14, 3), (7, 5)):
    for align in (False, True):
      ours = np.asarray(resize_bilinear(jnp.asarray(x), out_hw, align_corners=align))
      ref = torch.nn.functional.interpolate(
          torch.from_numpy(x).permute(0, 3, 1, 2), size=out_hw, mode='bilinear', align_corners=align
      )
      np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=1e-6)
  # x8 with corners aligned keeps the corner values.
  m = interpolation_matrix(32, 256, True)
  assert m[0, 0] == 1.0 and m[-1, -1] == 1.0


def test_model_imports_without_tensorflow():
  code = textwrap.dedent("""
      import sys
      class Block:
          def find_spec(self, name, path=None, target=None):
              if name == 'tensorflow' or name.startswith('tensorflow.'):
                  raise ImportError('tensorflow is blocked in this test')
      sys.meta_path.insert(0, Block())
      import mvlt_jax.models, mvlt_jax.losses, mvlt_jax.masking, mvlt_jax.inference
      import numpy as np
      # Photos get the training preprocessing without TensorFlow too (#18).
      photo = mvlt_jax.inference.load_photo(np.zeros((40, 30, 3), np.uint8), 32)
      assert photo.shape == (32, 32, 3)
      assert 'tensorflow' not in sys.modules
      print('ok')
  """)
  result = subprocess.run(
      [sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip().endswith('ok')


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_word_grad_impls_agree_and_pad_gets_no_lookup_gradient(dtype):
  """'one_hot' and 'scatter' give the same word-table gradient, and it is the gradient of the
  release's ``nn.Embedding(padding_idx=0)``: nothing from the [PAD] positions."""
  from mvlt_jax.models import layers

  vocab, width = 50, 16
  # Many repeats of id 0 (the [PAD]s that made the scatter slow on GPUs), and every id.
  ids = jnp.concatenate(
      [jnp.zeros((3, 40), jnp.int32), jax.random.randint(jax.random.key(1), (3, 24), 1, vocab)],
      axis=1,
  )
  ids = ids.at[0, 1:vocab].set(jnp.arange(1, vocab))
  make = lambda impl, pad: layers.TextEmbeddings(
      vocab, width, 128, 2, 0.0, dtype, word_grad_impl=impl, padding_idx=pad
  )
  params = make('scatter', 0).init(jax.random.key(0), ids, True)
  cotangent = jax.random.normal(jax.random.key(2), ids.shape + (width,))

  def grads(module):
    loss = lambda p: jnp.sum(module.apply(p, ids, True).astype(jnp.float32) * cotangent)
    return jax.jit(jax.value_and_grad(loss))(params)

  (value_scatter, grad_scatter), (value_dense, grad_dense), (value_all, grad_all) = map(
      grads, (make('scatter', 0), make('one_hot', 0), make('scatter', -1))
  )
  np.testing.assert_array_equal(value_dense, value_scatter)
  np.testing.assert_array_equal(value_all, value_scatter)  # padding_idx changes no value
  tol = 1e-5 if dtype == jnp.float32 else 3e-2  # bf16: the scatter adds in bf16
  for path in ('word_embeddings', 'position_embeddings', 'LayerNorm'):
    for a, b in zip(
        jax.tree.leaves(grad_dense['params'][path]), jax.tree.leaves(grad_scatter['params'][path])
    ):
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(np.max(np.abs(b))))
  word_grad = lambda g: np.asarray(g['params']['word_embeddings']['embedding'], np.float32)
  for grad in (grad_scatter, grad_dense):
    assert np.all(word_grad(grad)[0] == 0)  # [PAD]: nothing from lookups
    assert np.all(np.abs(word_grad(grad)[1:]).sum(axis=1) > 0)  # every caption word: some
    # The other rows are exactly those of the gradient that includes [PAD].
    np.testing.assert_allclose(
        word_grad(grad)[1:],
        word_grad(grad_all)[1:],
        rtol=tol,
        atol=tol * float(np.max(np.abs(word_grad(grad_all)))),
    )
  assert np.abs(word_grad(grad_all)[0]).sum() > 0  # padding_idx=-1: [PAD] gets its gradient


def test_pad_row_still_learns_through_the_tied_decoder(tiny_setup):
  """As in the release, [PAD] gets the MLM decoder's gradient (and weight decay) only."""
  _, model, variables, images, input_ids = tiny_setup
  labels = jnp.asarray([[7, 9], [11, 13]], jnp.int32)
  positions = jnp.asarray([[1, 2], [3, 4]], jnp.int32)

  def mlm(params):
    out = model.apply({**variables, 'params': params}, images, input_ids, mlm_positions=positions)
    return losses.mlm_loss(out['mlm_logits'], labels, jnp.ones(labels.shape))

  grad = jax.jit(jax.grad(mlm))(variables['params'])
  word_grad = np.asarray(grad['text_embeddings']['word_embeddings']['embedding'])
  assert np.abs(word_grad[0]).sum() > 0  # the decoder's softmax reaches every row


def test_initial_statistics_and_mlm_loss():
  """The release's init: word table std 0.02 (overwritten through the tied decoder), BERT
  position and type tables N(0, 1); the MLM loss on random captions is then ~ln(vocabulary).

  pvlt_tiny's widths and text path (768 wide) with one block per stage and 4,096 words, which
  CPU tests can afford; pvlt_tiny itself (10.47 at init, ln 30,522 = 10.33):
  docs/fidelity.md.
  """
  config = pretrain.get_config()
  m = config.model
  m.variant = 'pvlt_micro'
  m.embed_dims = (64, 128, 320, 512)  # pvlt_tiny's widths: the last feeds the MLM head
  m.num_heads = (1, 2, 5, 8)
  m.image_size = m.pos_grid_size = 32
  m.vocab_size = 4096
  m.dtype = 'float32'
  m.heads = ('mlm',)
  model = build_model(m)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(2, 32, 32, 3)), jnp.float32)
  input_ids = rng.integers(1000, m.vocab_size, size=(2, m.text_length))
  input_ids[:, 0], input_ids[:, 40], input_ids[:, 41:] = 101, 102, 0  # [CLS] ... [SEP] [PAD]...
  input_ids = jnp.asarray(input_ids, jnp.int32)
  positions = jnp.tile(jnp.arange(1, 40, dtype=jnp.int32), (2, 1))  # [B, P]: every word

  def init_and_loss(key):
    variables = model.init({'params': key}, images, input_ids)
    out = model.apply(variables, images, input_ids, mlm_positions=positions)
    labels = jnp.take_along_axis(input_ids, positions, axis=1)
    loss = losses.mlm_loss(out['mlm_logits'], labels, jnp.ones(labels.shape))
    return variables['params']['text_embeddings'], loss

  tables, loss = jax.jit(init_and_loss)(jax.random.key(0, impl='rbg'))
  std = lambda name: float(np.std(np.asarray(tables[name]['embedding'])))
  assert abs(std('word_embeddings') - 0.02) < 0.001
  assert abs(std('position_embeddings') - 1.0) < 0.02
  assert abs(std('token_type_embeddings') - 1.0) < 0.1
  # ln(4,096) = 8.32 plus ~0.15 from the logits' spread; a N(0, 1) table gave ~100.
  assert abs(float(loss) - np.log(m.vocab_size) - 0.15) < 0.3, float(loss)


def test_word_table_without_the_mlm_head_keeps_pytorchs_embedding_init():
  """The release's recognition model has no tied decoder: N(0, 1) with the [PAD] row zero."""
  from mvlt_jax.models import layers

  ids = jnp.zeros((1, 4), jnp.int32)
  tables = {}
  for tied in (True, False):
    module = layers.TextEmbeddings(500, 64, 16, 2, 0.0, jnp.float32, tied_to_decoder=tied)
    params = module.init(jax.random.key(0), ids, True)['params']
    tables[tied] = np.asarray(params['word_embeddings']['embedding'])
  assert abs(tables[True].std() - 0.02) < 0.002 and np.abs(tables[True][0]).sum() > 0
  assert abs(tables[False].std() - 1.0) < 0.02 and np.all(tables[False][0] == 0)
  # model.word_init_std overrides the release's rule.
  module = layers.TextEmbeddings(500, 64, 16, 2, 0.0, jnp.float32, word_init_std=1.0)
  table = np.asarray(
      module.init(jax.random.key(0), ids, True)['params']['word_embeddings']['embedding']
  )
  assert abs(table.std() - 1.0) < 0.02


def test_word_embedding_grad_resolution():
  from mvlt_jax.models import word_embedding_grad

  model_config = pretrain.model_config()
  assert model_config.word_embedding_grad == 'auto'
  assert word_embedding_grad(model_config, 'gpu') == 'one_hot'
  assert word_embedding_grad(model_config, 'cpu') == 'scatter'
  model_config.word_embedding_grad = 'one_hot'
  assert word_embedding_grad(model_config, 'cpu') == 'one_hot'
  model_config.word_embedding_grad = 'gather'
  with pytest.raises(ValueError, match='word_embedding_grad'):
    word_embedding_grad(model_config, 'cpu')


def _dot_count(jaxpr) -> int:
  """dot_general equations in ``jaxpr`` and every jaxpr nested in it (remat bodies too)."""
  count = 0
  for eqn in jaxpr.eqns:
    count += eqn.primitive.name == 'dot_general'
    for param in eqn.params.values():
      for value in param if isinstance(param, (list, tuple)) else (param,):
        if isinstance(value, jax.extend.core.ClosedJaxpr):
          count += _dot_count(value.jaxpr)
        elif isinstance(value, jax.extend.core.Jaxpr):
          count += _dot_count(value)
  return count


def test_remat_policies_give_the_same_gradient_and_save_what_they_say(tiny_setup):
  _, _, variables, images, input_ids = tiny_setup
  heads = ('mlm', 'itm')  # remat wraps the transformer blocks only: no decoder to compile
  params = {k: v for k, v in variables['params'].items() if not k.startswith(('t2i', 'sup', 'sub'))}

  def gradient_and_dots(remat: bool, policy: str):
    model_config = tiny_config(heads=heads).model
    model_config.remat, model_config.remat_policy = remat, policy
    model = build_model(model_config)

    def loss(params):
      out = model.apply({'params': params}, images, input_ids)
      return out['itm_logits'].sum() + out['mlm_logits'].mean()

    grad = jax.grad(loss)
    return grad, _dot_count(jax.make_jaxpr(grad)(params))

  reference, plain_dots = gradient_and_dots(False, '')
  reference = jax.jit(reference)(params)
  dots = {}
  for policy in ('', 'dots_saveable', 'dots_with_no_batch_dims_saveable'):
    grad, dots[policy] = gradient_and_dots(True, policy)
    if policy != 'dots_with_no_batch_dims_saveable':  # (one compile less; it lies between)
      jax.tree.map(
          lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6),
          jax.jit(grad)(params),
          reference,
      )
  # The backward pass recomputes every product of a block without a policy, none when the
  # products are saved, and only the batched ones (XLA attention's) with no_batch_dims.
  assert dots['dots_saveable'] == plain_dots
  assert plain_dots < dots['dots_with_no_batch_dims_saveable'] < dots['']


def test_unknown_or_idle_remat_policy_is_a_config_error():
  from mvlt_jax import config_check
  from mvlt_jax.errors import MVLTError

  config = tiny_config()
  config.model.remat, config.model.remat_policy = True, 'save_everything'
  with pytest.raises(MVLTError, match="remat_policy 'save_everything'.*dots_saveable"):
    config_check.check_model(config.model)
  config.model.remat, config.model.remat_policy = False, 'dots_saveable'
  with pytest.raises(MVLTError, match='remat_policy=.dots_saveable. applies to .*remat=True'):
    config_check.check_model(config.model)
  config.model.remat = True
  config_check.check_model(config.model)
  # A checkpoint's config from before the option (no remat_policy key) is accepted.
  saved = ml_collections.ConfigDict(tiny_config().model.to_dict())
  del saved['remat_policy']
  config_check.check_model(saved)


def test_attribute_heads_shapes_and_names():
  config = tiny_config(heads=('itm', 'attributes'))
  config.model.attribute_classes = (16, 6)
  out = _abstract_forward(config.model, 64)
  assert [x.shape for x in out['caption_attribute_logits']] == [(2, 16), (2, 6)]
  assert [x.shape for x in out['image_attribute_logits']] == [(2, 16), (2, 6)]
  assert [x.shape for x in out['imagecls_attribute_logits']] == [(2, 16), (2, 6)]
  model = build_model(config.model)
  params = jax.eval_shape(
      model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 16), jnp.int32)
  )['params']
  names = {name for name in params if '_attr' in name}
  assert names == {
      f'{side}_attr{i}_head{suffix}'
      for side in ('caption', 'image', 'imagecls')
      for i in (0, 1)
      for suffix in ('', '_embed')
  }
  config.model.attribute_classes = ()
  with pytest.raises(ValueError, match='attribute_classes'):
    _abstract_forward(config.model, 64)
