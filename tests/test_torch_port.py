"""The PyTorch port of MVLT: the release's names, shapes and parameter counts, and behaviour.

These tests import PyTorch only (the port must work without JAX).
"""

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip('torch')
F = torch.nn.functional

from mvlt_jax import torch_port  # noqa: E402  (after the torch import check)
from mvlt_jax.errors import MVLTError  # noqa: E402
from tests.conftest import SHARED

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(SHARED, 'reference')
PRETRAIN_LISTING = os.path.join(REFERENCE, 'pvlt_tiny_pretrain_state_dict.tsv')
RECOGNITION_LISTING = os.path.join(REFERENCE, 'pvlt_tiny_recognition_state_dict.tsv')
PRETRAIN_PARAMETERS = 40_025_089  # the release's pvlt_tiny, tied decoder counted once
RECOGNITION_PARAMETERS = 37_870_164


def read_listing(path):
  """``{key: shape}`` from a reference listing (``key<TAB>(d0, d1)<TAB>dtype``)."""
  shapes = {}
  with open(path) as f:
    for line in f:
      if line.startswith('#') or not line.strip():
        continue
      key, shape, _ = line.rstrip('\n').split('\t')
      shapes[key] = tuple(int(d) for d in shape.strip('()').split(',') if d.strip())
  return shapes


def small_config(**overrides):
  """Narrow widths (pvlt_micro), small vocabulary/text/decoder: fast on CPU."""
  fields = dict(
      pos_grid_size=64,
      text_length=8,
      vocab_size=50,
      text_width=24,
      head_width=16,
      mir_channels=4,
      num_main_classes=3,
      num_sub_classes=5,
      heads=('mlm', 'itm', 'mir', 'recognition'),
  )
  fields.update(overrides)
  return torch_port.MVLTConfig.for_variant('pvlt_micro', **fields)


def inputs(config, batch=2, size=64, seed=0):
  generator = torch.Generator().manual_seed(seed)
  images = torch.rand(batch, 3, size, size, generator=generator)
  input_ids = torch.randint(0, config.vocab_size, (batch, config.text_length), generator=generator)
  return images, input_ids


@pytest.fixture(scope='module')
def pretrain_model():
  return torch_port.MVLT(torch_port.MVLTConfig(heads=torch_port.PRETRAIN_HEADS))


@pytest.fixture(scope='module')
def recognition_model():
  return torch_port.MVLT(torch_port.MVLTConfig(heads=torch_port.RECOGNITION_HEADS))


@pytest.mark.skipif(not os.path.isfile(PRETRAIN_LISTING), reason='reference listings absent')
@pytest.mark.parametrize(
    'task, listing, count',
    [
        ('pretrain', PRETRAIN_LISTING, PRETRAIN_PARAMETERS),
        ('recognition', RECOGNITION_LISTING, RECOGNITION_PARAMETERS),
    ],
)
def test_state_dict_is_the_releases(task, listing, count, request):
  model = request.getfixturevalue(f'{task}_model')
  want = read_listing(listing)
  have = torch_port.state_dict_shapes(model.state_dict())
  assert sorted(set(want) - set(have)) == []  # missing
  assert sorted(set(have) - set(want)) == []  # unexpected
  assert have == want
  assert list(have) == list(want)  # even the release's order
  assert torch_port.count_parameters(model) == count


def test_mlm_decoder_is_tied_to_the_word_embedding(pretrain_model):
  decoder = pretrain_model.mlm_head.mlm_decoder.weight
  words = pretrain_model.text_embeddings.word_embeddings.weight
  assert decoder is words
  assert pretrain_model.mlm_head.bias is not words
  # A state dict with a changed word table changes the decoder too (one Parameter).
  model = torch_port.MVLT(small_config())
  state = model.state_dict()
  new_words = torch.randn_like(state['text_embeddings.word_embeddings.weight'])
  state['text_embeddings.word_embeddings.weight'] = new_words
  state['mlm_head.mlm_decoder.weight'] = new_words
  model.load_state_dict(state, strict=True)
  assert torch.equal(model.mlm_head.mlm_decoder.weight, new_words)


@torch.no_grad()
def test_initialisation_follows_the_release(pretrain_model, recognition_model):
  embeddings = pretrain_model.text_embeddings
  words = embeddings.word_embeddings.weight
  # The tied MLM decoder is an nn.Linear whose weight is the word table: _init_weights'
  # trunc_normal_(std=0.02) overwrites PyTorch's N(0, 1), the [PAD] row included.
  assert 0.0195 < float(words.std()) < 0.0205
  assert float(words[0].abs().max()) > 0.0
  # The BERT position and token-type tables keep PyTorch's N(0, 1).
  assert embeddings.position_embeddings.weight.shape == (512, 768)
  assert 0.98 < float(embeddings.position_embeddings.weight.std()) < 1.02
  assert embeddings.token_type_embeddings.weight.shape == (2, 768)
  assert 0.9 < float(embeddings.token_type_embeddings.weight.std()) < 1.1
  assert embeddings.word_embeddings.padding_idx == 0
  # Without an MLM head (the release's recognition model) nothing overwrites the table:
  # N(0, 1), with the zero [PAD] row of nn.Embedding(padding_idx=0).
  recognition_words = recognition_model.text_embeddings.word_embeddings.weight
  assert 0.98 < float(recognition_words.std()) < 1.02
  assert float(recognition_words[0].abs().max()) == 0.0
  q = pretrain_model.block1[0].attn.q
  assert 0.015 < float(q.weight.std()) < 0.025  # timm's trunc_normal_(std=0.02)
  assert float(q.bias.abs().max()) == 0.0
  assert float(pretrain_model.pos_embed1.std()) < 0.025
  assert float(pretrain_model.text_pos_embed1.std()) < 0.025
  norm = pretrain_model.block1[0].norm1
  assert torch.equal(norm.weight, torch.ones_like(norm.weight))


def test_pad_row_gets_gradient_only_through_the_tied_decoder():
  """[PAD] (id 0) lookups add no gradient to the word table; the MLM decoder's does."""
  config = small_config(heads=('mlm', 'itm'))
  model = torch_port.MVLT(config)  # train mode: dropout on, which changes nothing here
  images, _ = inputs(config)
  pad = config.word_padding_idx
  caption = torch.tensor([[1, 7, 9, 11, pad, pad, pad, pad]] * 2)  # [CLS]-like 1, [PAD]s
  assert caption.shape[1] == config.text_length
  words = model.text_embeddings.word_embeddings.weight
  # Lookup path only: the ITM loss does not touch the decoder.
  outputs = model(images, caption)
  outputs['itm_logits'].sum().backward()
  lookup_grad = words.grad.clone()
  assert float(lookup_grad[pad].abs().max()) == 0.0
  for token in (7, 9, 11):
    assert float(lookup_grad[token].abs().max()) > 0.0, token
  unused = sorted(set(range(config.vocab_size)) - set(caption.flatten().tolist()))
  assert float(lookup_grad[unused].abs().max()) == 0.0
  # Lookup and tied decoder: the MLM loss reaches every row through the decoder.
  model.zero_grad()
  outputs = model(images, caption)
  (outputs['itm_logits'].sum() + outputs['mlm_logits'].logsumexp(-1).sum()).backward()
  total_grad = words.grad
  assert float(total_grad[pad].abs().max()) > 0.0
  assert float(total_grad[unused].abs().max()) > 0.0
  # No padding_idx: the [PAD] lookups add gradient too.
  model = torch_port.MVLT(small_config(heads=('itm',), word_padding_idx=-1))
  model(images, caption)['itm_logits'].sum().backward()
  assert float(model.text_embeddings.word_embeddings.weight.grad[pad].abs().max()) > 0.0


@pytest.mark.parametrize(
    'variant, depths',
    [('pvlt_small', (3, 4, 6, 3)), ('pvlt_medium', (3, 4, 18, 3)), ('pvlt_large', (3, 8, 27, 3))],
)
def test_variants_differ_in_blocks_per_stage(variant, depths):
  config = torch_port.MVLTConfig.for_variant(variant)
  assert config.depths == depths
  assert config.embed_dims == (64, 128, 320, 512)


def test_outputs_and_shapes():
  config = small_config()
  model = torch_port.MVLT(config).eval()
  images, input_ids = inputs(config, size=96)  # not the stored 64: every grid is resized
  with torch.no_grad():
    outputs = model(images, input_ids)
  assert outputs['itm_logits'].shape == (2, 2)
  assert outputs['mlm_logits'].shape == (2, config.text_length, config.vocab_size)
  assert outputs['reconstruction'].shape == (2, 3, 96, 96)
  assert outputs['main_logits'].shape == (2, config.num_main_classes)
  assert outputs['sub_logits'].shape == (2, config.num_sub_classes)
  assert all(torch.isfinite(v).all() for v in outputs.values())


def test_attribute_heads():
  """The demo's attribute heads (not in the release), as mvlt_jax/models/mvlt.py builds them:
  per side and attribute ``<side>_attr<k>_head_embed`` (Linear + LayerNorm) and
  ``<side>_attr<k>_head`` (ClassifierHead); the caption's and 'imagecls' read [CLS], 'image'
  the pooled stage-4 visual tokens."""
  config = small_config(heads=torch_port.HEAD_NAMES, attribute_classes=(4, 3))
  model = torch_port.MVLT(config).eval()
  shapes = torch_port.state_dict_shapes(model.state_dict())
  last_dim, width = config.embed_dims[-1], config.head_width
  for side in torch_port.ATTRIBUTE_SIDES:
    for index, classes in enumerate(config.attribute_classes):
      name = f'{side}_attr{index}_head'
      assert shapes[f'{name}_embed.0.weight'] == (width, last_dim)
      assert shapes[f'{name}_embed.1.weight'] == (width,)
      assert shapes[f'{name}.linear.weight'] == (classes, width)
      assert shapes[f'{name}.linear.bias'] == shapes[f'{name}.linear_bias'] == (classes,)
  assert len([k for k in shapes if '_attr' in k]) == 3 * 2 * 7
  images, input_ids = inputs(config)
  with torch.no_grad():
    outputs = model(images, input_ids)
    for side in torch_port.ATTRIBUTE_SIDES:
      logits = outputs[f'{side}_attribute_logits']
      assert [tuple(x.shape) for x in logits] == [(2, 4), (2, 3)]
    # 'image' reads the pooled visual tokens: the same head on [CLS] gives other logits.
    visual_maps, text = model.encode(images, input_ids)
    head = lambda x: model.image_attr0_head(model.image_attr0_head_embed(x))
    assert torch.allclose(
        outputs['image_attribute_logits'][0], head(visual_maps[-1].mean(dim=(2, 3)))
    )
    assert not torch.allclose(outputs['image_attribute_logits'][0], head(text[:, 0]))
  without = torch_port.MVLT(small_config()).state_dict()
  assert not any('_attr' in k for k in without)


def test_eval_is_deterministic_and_train_is_stochastic():
  config = small_config()
  model = torch_port.MVLT(config)
  images, input_ids = inputs(config)
  model.eval()
  with torch.no_grad():
    first, second = model(images, input_ids), model(images, input_ids)
  assert all(torch.equal(first[k], second[k]) for k in first)
  model.train()
  torch.manual_seed(1)
  with torch.no_grad():
    trained = model(images, input_ids)
  assert not torch.allclose(trained['itm_logits'], first['itm_logits'])


def test_batch_norm_statistics_update_in_train_mode_only():
  config = small_config(heads=('mir',))
  model = torch_port.MVLT(config)
  images, input_ids = inputs(config)
  bn = model.t2i_head.reduction1[1]
  assert bn.momentum == pytest.approx(0.1) and bn.eps == pytest.approx(1e-5)
  model.eval()
  with torch.no_grad():
    model(images, input_ids)
  assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
  model.train()
  with torch.no_grad():
    model(images, input_ids)
  assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
  assert int(bn.num_batches_tracked) == 1


def test_drop_path_drops_whole_examples():
  drop = torch_port.DropPath(0.5)
  x = torch.ones(64, 3, 4)
  drop.eval()
  assert torch.equal(drop(x), x)
  drop.train()
  torch.manual_seed(0)
  y = drop(x)
  per_example = y.reshape(64, -1)
  kept = per_example[:, 0] > 0
  assert torch.all(per_example[kept] == 2.0) and torch.all(per_example[~kept] == 0.0)
  assert 10 < int(kept.sum()) < 54


def test_drop_path_rates_rise_linearly_to_the_configured_rate():
  model = torch_port.MVLT(small_config(depths=(2, 1, 1, 1), drop_path_rate=0.2))
  rates = [block.drop_path.rate for k in range(1, 5) for block in getattr(model, f'block{k}')]
  assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])


def test_position_embeddings_are_resized_bilinearly():
  config = small_config()
  model = torch_port.MVLT(config)
  stored = model.pos_embed1  # stored for the 64x64 input: a 16x16 grid
  assert torch.equal(model._visual_pos_embed(0, 16, 16), stored)  # pylint: disable=protected-access
  resized = model._visual_pos_embed(0, 24, 24)  # pylint: disable=protected-access
  grid = stored.reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
  want = F.interpolate(grid, size=(24, 24), mode='bilinear', align_corners=False)
  assert torch.allclose(resized, want.flatten(2).transpose(1, 2))
  # Stage 4 drops its leading (class-token) slot: changing it changes nothing.
  before = model._visual_pos_embed(3, 2, 2).clone()  # pylint: disable=protected-access
  with torch.no_grad():
    model.pos_embed4[:, 0] += 1.0
  assert torch.equal(model._visual_pos_embed(3, 2, 2), before)  # pylint: disable=protected-access
  assert model.pos_embed4.shape[1] == 2 * 2 + 1


def test_decoder_upsampling_aligns_corners():
  x = torch.arange(8.0).reshape(1, 2, 2, 2)
  y = torch_port.upsample(x, 8)
  assert y.shape == (1, 2, 16, 16)
  # align_corners=True keeps the corner values exactly (half-pixel centres would not).
  assert torch.equal(y[..., [0, 0, -1, -1], [0, -1, 0, -1]], x[..., [0, 0, 1, 1], [0, 1, 0, 1]])


def test_shorter_text_uses_the_first_positions():
  config = small_config(heads=('itm',))
  model = torch_port.MVLT(config).eval()
  images, input_ids = inputs(config)
  with torch.no_grad():
    outputs = model(images, input_ids[:, :5])
  assert outputs['itm_logits'].shape == (2, 2)


@pytest.mark.parametrize(
    'make_inputs, message',
    [
        (
            lambda c: (torch.rand(1, 3, 60, 64), torch.zeros(1, c.text_length, dtype=torch.long)),
            'multiple of the total stride 32',
        ),
        (
            lambda c: (
                torch.rand(1, 3, 64, 64),
                torch.zeros(1, c.text_length + 1, dtype=torch.long),
            ),
            'text_length',
        ),
        (
            lambda c: (torch.rand(1, 64, 64), torch.zeros(1, c.text_length, dtype=torch.long)),
            '[B, 3, H, W]',
        ),
        (
            lambda c: (torch.rand(2, 3, 64, 64), torch.zeros(1, c.text_length, dtype=torch.long)),
            'Batch sizes differ',
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(make_inputs, message):
  config = small_config(heads=('itm',))
  model = torch_port.MVLT(config)
  with pytest.raises(torch_port.TorchPortConfigError, match=message.replace('[', r'\[')):
    model(*make_inputs(config))


def test_bad_configs_raise_clear_errors():
  with pytest.raises(torch_port.TorchPortConfigError, match='Unknown heads'):
    torch_port.MVLTConfig(heads=('mlm', 'captioning'))
  with pytest.raises(torch_port.TorchPortConfigError, match='Unknown variant'):
    torch_port.MVLTConfig.for_variant('pvlt_huge')
  with pytest.raises(torch_port.TorchPortConfigError, match='4 entries'):
    torch_port.MVLTConfig(depths=(2, 2, 2))
  with pytest.raises(torch_port.TorchPortConfigError, match='not divisible'):
    torch_port.MVLTConfig(num_heads=(3, 2, 5, 8))
  with pytest.raises(torch_port.TorchPortConfigError, match='word_padding_idx'):
    torch_port.MVLTConfig(word_padding_idx=30522)
  with pytest.raises(torch_port.TorchPortConfigError, match='need attribute_classes'):
    torch_port.MVLTConfig(heads=('attributes',))
  with pytest.raises(torch_port.TorchPortConfigError, match='at least one class'):
    torch_port.MVLTConfig(heads=('attributes',), attribute_classes=(3, 0))
  # An MVLTError: the converter's command line prints it as one `error:` line.
  assert issubclass(torch_port.TorchPortConfigError, MVLTError)


def test_config_from_a_mvlt_jax_model_config():
  model_config = dict(
      variant='pvlt_tiny',
      embed_dims=None,
      depths=None,
      image_size=256,
      text_length=128,
      vocab_size=30522,
      pos_grid_size=224,
      heads=['mlm', 'itm', 'mir'],
      mir_channels=64,
      bn_momentum=0.9,
      dtype='bfloat16',
      remat=False,
  )
  config = torch_port.config_from_model_config(model_config)
  assert config == torch_port.MVLTConfig()  # the release's pvlt_tiny pre-training model
  assert config.batch_norm_momentum == pytest.approx(0.1)
  small = torch_port.config_from_model_config(
      dict(variant='pvlt_tiny', depths=(1, 1, 1, 1), vocab_size=1000)
  )
  assert small.depths == (1, 1, 1, 1) and small.vocab_size == 1000
  assert config.word_padding_idx == 0
  assert torch_port.config_from_model_config(dict(word_padding_idx=-1)).word_padding_idx == -1
  with pytest.raises(torch_port.TorchPortConfigError, match='Unknown model.variant'):
    torch_port.config_from_model_config(dict(variant='vit_base'))


def test_port_imports_without_jax():
  code = (
      'import sys; import mvlt_jax.torch_port; '
      'bad = [m for m in ("jax", "flax", "tensorflow") if m in sys.modules]; '
      'sys.exit(f"imported {bad}" if bad else 0)'
  )
  result = subprocess.run(
      [sys.executable, '-c', code],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert result.returncode == 0, result.stdout + result.stderr
