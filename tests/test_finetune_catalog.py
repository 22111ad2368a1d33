"""Fine-tuning a checkpoint on a new catalog (issue #18).

(a) ``prepare --tokenizer_from=CKPT`` (or ``config.dataset.prepare_options.tokenizer_from``)
    tokenizes a catalog with the checkpoint's tokenizer and text length: same fingerprint;
(b) ``init_from`` loads every array whose name and shape match; the others are an error
    naming ``config.init_from_mismatch`` or, with ``'fresh'``, start fresh; what was loaded
    and what was not is printed, grouped by module, with shapes.

No training step runs: checkpoints are written from random variables (no compile).
"""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_variables, tiny_config
from input_pipeline import prepare
from input_pipeline import tokenizer as tok
from input_pipeline.datasets.catalog import CatalogOptions
from mvlt_jax import checkpoint, data
from mvlt_jax.errors import ConfigError
from mvlt_jax.models import build_model
from mvlt_jax.train_state import TrainState, load_init_from
from test_prepare_bad_input import make_catalog, run_cli

CAPTIONS = ['a red shirt with long sleeves', 'blue denim dress', 'green cotton trousers']
OTHER_CAPTIONS = ['a yellow silk skirt', 'black leather shoes with heels', 'white straw hat']


def fake_checkpoint(folder, text_length=12, captions=CAPTIONS) -> tok.Tokenizer:
  """What ``--tokenizer_from`` reads of a checkpoint folder: config.json and tokenizer/ (and a
  step folder, to be named instead of the checkpoint folder)."""
  os.makedirs(os.path.join(folder, '7'))
  tokenizer = tok.train_sentencepiece(captions, 30, out_dir=os.path.join(folder, 'tokenizer'))
  with open(os.path.join(folder, 'config.json'), 'w') as f:
    json.dump({'model': {'text_length': text_length, 'vocab_size': tokenizer.vocab_size}}, f)
  return tokenizer


# --- (a) preparing with a checkpoint's tokenizer --------------------------------------------


def test_prepare_takes_the_tokenizer_and_text_length_of_a_checkpoint(tmp_path, capsys):
  manual = make_catalog(tmp_path)
  ckpt = str(tmp_path / 'ckpt')
  wanted = fake_checkpoint(ckpt, text_length=12)
  data_dir = str(tmp_path / 'data')
  args = ['catalog', f'--data_dir={data_dir}', f'--manual_dir={manual}', '--num_workers=1']
  args.append('--image_size=32')
  code, err = run_cli(capsys, *args, f'--tokenizer_from={ckpt}/7')  # a step folder names it too
  assert code == 0, err
  prepared = prepare.load_prepared('catalog', data_dir)
  assert prepared.tokenizer.fingerprint == wanted.fingerprint
  assert prepared.builder.info.features['input_ids'].shape == (12,)
  assert prepared.metadata['options']['tokenizer_from'] == ckpt
  # Once more: already prepared, and the summary says where the tokenizer came from.
  assert prepare.main([*args, f'--tokenizer_from={ckpt}']) == 0
  out = capsys.readouterr().out
  assert 'Already prepared catalog' in out
  assert f'from the checkpoint {ckpt} (text length 12)' in out

  # The text length given wins over the checkpoint's.
  options = CatalogOptions.from_overrides('catalog', {'tokenizer_from': ckpt, 'text_length': 20})
  assert (options.text_length, options.tokenizer, options.vocab_size) == (
      20,
      'sentencepiece',
      wanted.vocab_size,
  )
  # Mistakes, each one error line before anything is read.
  other = str(tmp_path / 'data2')
  args = ['catalog', f'--data_dir={other}', f'--manual_dir={manual}']
  for extra, words in (
      ('--vocab_file=/x/vocab.txt', 'both name a tokenizer'),
      ('--vocab_size=40', f'vocab_size=40, but the tokenizer of tokenizer_from={ckpt} is'),
      ('--tokenizer=wordpiece', "tokenizer='wordpiece', but"),
  ):
    code, err = run_cli(capsys, *args, f'--tokenizer_from={ckpt}', extra)
    assert code == 1 and words in err, err
  converted = tmp_path / 'converted'  # as `convert from-torch` writes it: no tokenizer
  converted.mkdir()
  (converted / 'config.json').write_text(
      json.dumps({'model': {'vocab_size': 30522, 'text_length': 128}})
  )
  code, err = run_cli(capsys, *args, f'--tokenizer_from={converted}')
  assert code == 1
  assert 'keeps no tokenizer' in err and 'vocab_size=30522, text_length=128' in err
  assert '--tokenizer=wordpiece --vocab_file=/path/to/bert-base-uncased/vocab.txt' in err
  assert not os.path.exists(os.path.join(other, 'catalog', '1.0.0'))
  # The checkpoint's tokenizer changed since: the prepared dataset is not taken for it.
  shutil.rmtree(os.path.join(ckpt, 'tokenizer'))
  tok.train_sentencepiece(OTHER_CAPTIONS, 30, out_dir=os.path.join(ckpt, 'tokenizer'))
  code, err = run_cli(
      capsys,
      'catalog',
      f'--data_dir={data_dir}',
      f'--manual_dir={manual}',
      '--image_size=32',
      f'--tokenizer_from={ckpt}',
      '--text_length=12',
  )
  assert code == 1 and 'which has changed since' in err and '--overwrite' in err, err


def catalog_config(tmp_path, manual, ckpt):
  """The release's config on a catalog, tokenized with ``ckpt``'s tokenizer."""
  config = tiny_config()
  config.dataset.name = 'catalog'
  config.dataset.data_dir = str(tmp_path / 'data')
  config.dataset.manual_dir = manual
  config.dataset.caption_fields = 'caption'
  config.dataset.prepare_options.image_size = 32
  config.dataset.prepare_options.tokenizer_from = ckpt
  # Describe a tokenizer to build: tokenizer_from replaces them.
  config.dataset.prepare_options.vocab_size = 40
  assert config.dataset.tokenizer == 'wordpiece'
  config.model.text_length = 12
  config.model.vocab_size = 0  # from the data
  return config


def test_training_config_prepares_with_the_checkpoint_tokenizer(tmp_path):
  """main.py's auto-prepare: ``dataset.prepare_options.tokenizer_from``."""
  manual = make_catalog(tmp_path)
  ckpt = str(tmp_path / 'ckpt')
  wanted = fake_checkpoint(ckpt, text_length=12)
  config = catalog_config(tmp_path, manual, ckpt)
  prepared = data.load_dataset(config)
  assert prepared.tokenizer.fingerprint == wanted.fingerprint
  assert data.resolve_config(config, prepared).model.vocab_size == wanted.vocab_size
  # A dataset prepared with another tokenizer is refused, not used.
  other = str(tmp_path / 'other')
  fake_checkpoint(other, captions=OTHER_CAPTIONS)
  config.dataset.prepare_options.tokenizer_from = other
  with pytest.raises(ConfigError, match='was prepared with another tokenizer.*--overwrite'):
    data.load_dataset(config)


# --- (b) init_from: what fits loads, the rest is an error or starts fresh ---------------------


def state_of(config, seed):
  variables = random_variables(
      build_model(config.model), text_length=config.model.text_length, seed=seed
  )
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=(),
      rng=jnp.zeros(2, jnp.uint32),
  )


def save_checkpoint(tmp_path, captions=CAPTIONS):
  """The demo's kind of checkpoint: recognition and attribute heads, its own tokenizer."""
  tokenizer = tok.train_sentencepiece(captions, 30, out_dir=str(tmp_path / 'ckpt_tokenizer'))
  config = tiny_config(heads=('mlm', 'itm', 'mir', 'recognition', 'attributes'))
  config.model.vocab_size = tokenizer.vocab_size
  config.model.attribute_classes = (16, 6)
  state = state_of(config, seed=1)
  path = str(tmp_path / 'ckpt')
  checkpoint.save_variables(
      path, state.variables, config, step=7, tokenizer_dir=str(tmp_path / 'ckpt_tokenizer')
  )
  return path, state, tokenizer


def run_config(tmp_path, ckpt, tokenizer, **model):
  """A fine-tuning run on a catalog whose tokenizer is ``tokenizer``."""
  config = tiny_config(heads=('mlm', 'itm', 'mir', 'recognition'))
  config.dataset.name = 'catalog'
  config.dataset.data_dir = str(tmp_path / 'data')
  target = tmp_path / 'data' / 'catalog' / 'tokenizer'
  shutil.rmtree(target, ignore_errors=True)
  tokenizer.save(str(target))
  config.model.vocab_size = tokenizer.vocab_size
  config.model.update(model)
  config.init_from = ckpt
  return config


def leaf(tree, name):
  for part in name.split('/'):
    tree = tree[part]
  return np.asarray(tree)


def test_init_from_mismatch_error_names_the_option_and_fresh_loads_the_rest(tmp_path, capsys):
  ckpt, saved, _ = save_checkpoint(tmp_path)
  catalog_tokenizer = tok.train_sentencepiece(OTHER_CAPTIONS, 30)
  config = run_config(tmp_path, ckpt, catalog_tokenizer, num_sub_classes=4, text_length=8)
  state = state_of(config, seed=2)
  with pytest.raises(ConfigError) as error:
    load_init_from(state, config)
  message = str(error.value)
  for words in (
      f'init_from {ckpt}: 9 parameter arrays have other shapes in the checkpoint than in the '
      'configured model (checkpoint -> here): ',
      'sub_cls_head/linear: bias [7] -> [4], kernel [32, 7] -> [32, 4]; ',
      f'text_embeddings/word_embeddings/embedding [{saved.params["mlm_head"]["bias"].shape[0]}, '
      f'32] -> [{catalog_tokenizer.vocab_size}, 32]',
      "The text position embeddings do not fit: the checkpoint's text length is 16",
      f'`python -m input_pipeline.prepare catalog --data_dir={config.dataset.data_dir} '
      f'--tokenizer_from={ckpt} --overwrite ...`, then train with --config.model.text_length=16',
      'Set --config.init_from_mismatch=fresh to load the',
  ):
    assert words in message, message
  assert '\n' not in message

  config.init_from_mismatch = 'fresh'
  new, modules = load_init_from(state, config)
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == f'init_from {ckpt}: {ckpt}: mvlt_jax checkpoint, step 7'
  assert lines[1].startswith(f'init_from {ckpt}: loaded 169 of 178 parameter arrays (')
  assert lines[1].endswith(', 22 of 22 BatchNorm statistics')
  assert lines[2].startswith('  fresh (shape differs, in the checkpoint -> here): mlm_head/bias')
  assert lines[3].startswith('  the word table and the MLM decoder start fresh: the dataset')
  assert lines[4] == (
      "  the text position embeddings start fresh: the checkpoint's text length is 16, this "
      "model's 8"
  )
  assert lines[5].startswith("  a dataset prepared with the checkpoint's tokenizer and text")
  assert lines[6] == (
      '  not used (not in this model; arrays per module): caption_attr0_head (3), '
      'caption_attr0_head_embed (4), caption_attr1_head (3), caption_attr1_head_embed (4), '
      'image_attr0_head (3), image_attr0_head_embed (4), image_attr1_head (3), '
      'image_attr1_head_embed (4), imagecls_attr0_head (3), imagecls_attr0_head_embed (4), '
      'imagecls_attr1_head (3), imagecls_attr1_head_embed (4)'
  )
  assert len(lines) == 7
  for name in (
      'block2/0/attn/q/kernel',
      'sup_cls_head/linear/kernel',
      'mlm_head/transform/dense/kernel',
  ):
    np.testing.assert_array_equal(leaf(new.params, name), leaf(saved.params, name))
  for name in (
      'sub_cls_head/linear/kernel',
      'text_embeddings/word_embeddings/embedding',
      'text_pos_embed1',
  ):
    np.testing.assert_array_equal(leaf(new.params, name), leaf(state.params, name))
  assert {'block1', 'text_embeddings', 'mlm_head'} <= modules and 'sub_cls_head' not in modules

  config.init_from_mismatch = 'keep'
  with pytest.raises(ConfigError, match="init_from_mismatch='keep': choose one of error, fresh"):
    load_init_from(state, config)


def test_a_word_table_of_another_tokenizer_is_a_mismatch_whatever_its_shape(tmp_path, capsys):
  ckpt, saved, ckpt_tokenizer = save_checkpoint(tmp_path)
  # The checkpoint's tokenizer: everything loads.
  config = run_config(tmp_path, ckpt, ckpt_tokenizer)
  state = state_of(config, seed=2)
  new, _ = load_init_from(state, config)
  assert f'loaded 178 of 178 parameter arrays' in capsys.readouterr().out
  word_table = 'text_embeddings/word_embeddings/embedding'
  np.testing.assert_array_equal(leaf(new.params, word_table), leaf(saved.params, word_table))
  # Another tokenizer of the same size: same shapes, other words.
  other = tok.train_sentencepiece(OTHER_CAPTIONS + ['long red wool coat', 'silk scarf'], 30)
  assert other.vocab_size == ckpt_tokenizer.vocab_size
  config = run_config(tmp_path, ckpt, other)
  with pytest.raises(ConfigError) as error:
    load_init_from(state, config)
  message = str(error.value)
  assert 'The word table would map ids to other words (mlm_head/bias, ' in message
  assert 'init_from_mismatch=fresh' in message and f'--tokenizer_from={ckpt}' in message
  config.init_from_mismatch = 'fresh'
  new, _ = load_init_from(state, config)
  out = capsys.readouterr().out
  assert (
      '  fresh (same shape, other vocabulary): mlm_head/bias, '
      'text_embeddings/word_embeddings/embedding'
  ) in out
  assert 'loaded 176 of 178 parameter arrays' in out
  np.testing.assert_array_equal(leaf(new.params, word_table), leaf(state.params, word_table))
