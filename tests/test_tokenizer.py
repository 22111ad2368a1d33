"""Tokenizers: special ids, packing, round trips, save/load, bad vocabularies."""

import json
import os

import numpy as np
import pytest

from input_pipeline import tokenizer as tok
from input_pipeline.errors import TokenizerError
from prepare_test_data import write_bert_vocab

# A tiny BERT-like vocabulary: the special tokens at bert-base-uncased's ids.
WORDS = [
    'a',
    'red',
    'shirt',
    'with',
    'long',
    'sleeve',
    '##s',
    'cafe',
    '.',
    ',',
    'un',
    '##aff',
    '##able',
    '中',
    'blue',
    'jean',
    'x',
    '##x',
]


@pytest.fixture(scope='module')
def vocab_file(tmp_path_factory):
  path = tmp_path_factory.mktemp('vocab') / 'vocab.txt'
  write_bert_vocab(path, words=WORDS)
  return str(path)


@pytest.fixture(scope='module')
def wordpiece(vocab_file):
  return tok.WordPieceTokenizer.from_vocab_file(vocab_file)


CORPUS = [
    'Red cotton shirt with long sleeves',
    'Blue denim jeans with five pockets',
    'Black leather jacket with a zip front',
    'White canvas sneakers with laces',
    'Wool coat with notch lapels and two pockets',
] * 4


@pytest.fixture(scope='module')
def sentencepiece():
  return tok.train_sentencepiece(CORPUS, vocab_size=80)


def ids_of(vocab, tokens):
  return [vocab.index(t) for t in tokens]


# -- WordPiece ----------------------------------------------------------------


def test_wordpiece_special_ids_come_from_the_file(wordpiece):
  assert (
      wordpiece.pad_id,
      wordpiece.unk_id,
      wordpiece.cls_id,
      wordpiece.sep_id,
      wordpiece.mask_id,
  ) == (0, 100, 101, 102, 103)
  assert wordpiece.special_ids == (0, 100, 101, 102, 103)
  assert wordpiece.vocab_size == 104 + len(WORDS)


def test_basic_tokenize_lowercases_strips_accents_and_splits_punctuation():
  assert tok.basic_tokenize('Café  RED-shirt,\tlong\x00 sleeves.') == [
      'cafe',
      'red',
      '-',
      'shirt',
      ',',
      'long',
      'sleeves',
      '.',
  ]
  assert tok.basic_tokenize('a中文b') == ['a', '中', '文', 'b']


def test_wordpiece_greedy_longest_match(wordpiece, vocab_file):
  vocab = open(vocab_file, encoding='utf-8').read().split('\n')
  assert wordpiece.tokenize('Red shirt, long SLEEVES.') == ids_of(
      vocab, ['red', 'shirt', ',', 'long', 'sleeve', '##s', '.']
  )
  assert wordpiece.tokenize('unaffable café') == ids_of(vocab, ['un', '##aff', '##able', 'cafe'])
  # A word with an unmatchable piece, a CJK char outside the vocabulary and an
  # over-long word are each one [UNK].
  assert wordpiece.tokenize('shirtz 中文 ' + 'x' * 101) == [
      wordpiece.unk_id,
      vocab.index('中'),
      wordpiece.unk_id,
      wordpiece.unk_id,
  ]
  assert wordpiece.tokenize('x' * 100) == ids_of(vocab, ['x'] + ['##x'] * 99)


def test_wordpiece_encode_pads_and_truncates(wordpiece, vocab_file):
  vocab = open(vocab_file, encoding='utf-8').read().split('\n')
  ids = wordpiece.encode('red shirt', 6)
  assert ids.dtype == np.int32 and ids.shape == (6,)
  assert ids.tolist() == [101] + ids_of(vocab, ['red', 'shirt']) + [102, 0, 0]
  assert wordpiece.encode('red shirt with long sleeves', 4).tolist() == (
      [101] + ids_of(vocab, ['red', 'shirt']) + [102]
  )
  assert wordpiece.encode('', 3).tolist() == [101, 102, 0]
  with pytest.raises(ValueError):
    wordpiece.encode('red', 1)


def test_wordpiece_batch_and_decode_round_trip(wordpiece):
  texts = ['Red shirt, long sleeves.', 'blue jeans']
  batch = wordpiece.encode_batch(texts, 10)
  assert batch.shape == (2, 10) and batch.dtype == np.int32
  for row, text in zip(batch, texts):
    np.testing.assert_array_equal(row, wordpiece.encode(text, 10))
  assert wordpiece.decode(batch[0]) == 'red shirt , long sleeves .'
  # Specials are skipped, [UNK] included.
  assert wordpiece.decode([101, 100, wordpiece.tokenize('red')[0], 103, 102, 0]) == 'red'


def test_wordpiece_save_and_load(wordpiece, tmp_path):
  wordpiece.save(str(tmp_path))
  info = json.load(open(tmp_path / tok.TOKENIZER_JSON))
  assert info['kind'] == 'wordpiece'
  assert info['special_ids'] == {'pad': 0, 'unk': 100, 'cls': 101, 'sep': 102, 'mask': 103}
  assert info['vocab_size'] == wordpiece.vocab_size
  loaded = tok.load_tokenizer(str(tmp_path))
  assert isinstance(loaded, tok.WordPieceTokenizer)
  assert loaded.fingerprint == wordpiece.fingerprint
  np.testing.assert_array_equal(
      loaded.encode('unaffable red shirts', 12), wordpiece.encode('unaffable red shirts', 12)
  )


def test_wordpiece_rejects_other_special_ids(tmp_path):
  path = tmp_path / 'vocab.txt'
  write_bert_vocab(
      path, special_ids=tok.SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4), words=WORDS
  )
  with pytest.raises(TokenizerError, match=r'vocab.txt.*\[UNK\] is at id 1, expected id 100'):
    tok.WordPieceTokenizer.from_vocab_file(str(path))


def test_wordpiece_rejects_duplicates_and_missing_file(tmp_path):
  path = tmp_path / 'vocab.txt'
  write_bert_vocab(path, words=['red', 'red'])
  with pytest.raises(TokenizerError, match="'red' appears twice"):
    tok.WordPieceTokenizer.from_vocab_file(str(path))
  with pytest.raises(TokenizerError, match='nope.txt: cannot read'):
    tok.WordPieceTokenizer.from_vocab_file(str(tmp_path / 'nope.txt'))


# -- SentencePiece -------------------------------------------------------------


def test_sentencepiece_has_fixed_special_ids(sentencepiece):
  assert sentencepiece.special_ids == (0, 1, 2, 3, 4)
  assert (
      sentencepiece.pad_id,
      sentencepiece.unk_id,
      sentencepiece.cls_id,
      sentencepiece.sep_id,
      sentencepiece.mask_id,
  ) == (0, 1, 2, 3, 4)
  processor = sentencepiece._processor
  assert [processor.id_to_piece(i) for i in range(5)] == list(tok.SPECIAL_TOKENS)
  assert 5 < sentencepiece.vocab_size <= 80


def test_sentencepiece_lowercases_and_never_emits_specials(sentencepiece):
  assert sentencepiece.tokenize('RED Cotton SHIRT') == sentencepiece.tokenize('red cotton shirt')
  ids = sentencepiece.tokenize('[MASK] [CLS] red shirt [PAD]')
  assert not set(ids) & {0, 2, 3, 4}


def test_sentencepiece_round_trip_and_packing(sentencepiece):
  text = 'Blue denim jeans with five pockets'
  ids = sentencepiece.encode(text, 40)
  n = len(sentencepiece.tokenize(text))
  assert ids[0] == 2 and ids[n + 1] == 3 and (ids[n + 2 :] == 0).all()
  assert sentencepiece.decode(ids) == text.lower()
  short = sentencepiece.encode(text, 5)
  assert short.tolist() == [2] + sentencepiece.tokenize(text)[:3] + [3]
  np.testing.assert_array_equal(sentencepiece.encode_batch([text, 'red shirt'], 40)[0], ids)


def test_sentencepiece_training_is_deterministic(sentencepiece):
  again = tok.train_sentencepiece(CORPUS, vocab_size=80)
  assert again.fingerprint == sentencepiece.fingerprint


def test_sentencepiece_small_corpus_gives_a_smaller_vocabulary():
  small = tok.train_sentencepiece(['red shirt', 'blue shirt'], vocab_size=1000)
  assert small.vocab_size < 1000
  assert small.decode(small.encode('red shirt', 10)) == 'red shirt'


def test_sentencepiece_training_errors_are_clear():
  with pytest.raises(TokenizerError, match='no training captions'):
    tok.train_sentencepiece(['  ', ''], vocab_size=50)
  with pytest.raises(TokenizerError, match='vocab_size=8 failed'):
    tok.train_sentencepiece(CORPUS, vocab_size=8)


def test_sentencepiece_save_and_load(sentencepiece, tmp_path):
  sentencepiece.save(str(tmp_path))
  loaded = tok.load_tokenizer(str(tmp_path))
  assert isinstance(loaded, tok.SentencePieceTokenizer)
  assert loaded.info() == sentencepiece.info()
  np.testing.assert_array_equal(loaded.encode(CORPUS[2], 20), sentencepiece.encode(CORPUS[2], 20))


def test_load_tokenizer_checks_its_files(sentencepiece, tmp_path):
  with pytest.raises(TokenizerError, match='no tokenizer saved here'):
    tok.load_tokenizer(str(tmp_path))
  sentencepiece.save(str(tmp_path))
  other = tok.train_sentencepiece(CORPUS[:2], vocab_size=40)
  with open(tmp_path / 'spm.model', 'wb') as f:  # A different model than recorded.
    f.write(other.model_bytes())
  with pytest.raises(TokenizerError, match='does not match'):
    tok.load_tokenizer(str(tmp_path))
  with open(os.path.join(tmp_path, tok.TOKENIZER_JSON), 'w') as f:
    json.dump({'kind': 'bpe'}, f)
  with pytest.raises(TokenizerError, match="unknown tokenizer kind 'bpe'"):
    tok.load_tokenizer(str(tmp_path))
