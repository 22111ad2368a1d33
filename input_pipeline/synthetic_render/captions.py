"""Captions of the synthetic products: Fashion-Gen style titles and descriptions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from input_pipeline.synthetic_render.attributes import ATTRIBUTE_PHRASES
from input_pipeline.synthetic_render.catalog_table import SubCategory
from input_pipeline.synthetic_render.palette import COLOUR_SYNONYMS, PATTERN_SYNONYMS, SOLID


def _pick(rng: np.random.Generator, options: Sequence):
  return options[int(rng.integers(len(options)))]


def _a(word: str) -> str:
  """'a' or 'an' for the word that follows."""
  return 'an' if word[:1].lower() in 'aeio' else 'a'


def _join(phrases: Sequence[str]) -> str:
  """'x', 'x and y', 'x, y and z'."""
  return phrases[0] if len(phrases) == 1 else ', '.join(phrases[:-1]) + ' and ' + phrases[-1]


def _capitalise(text: str) -> str:
  return text[:1].upper() + text[1:]


def _write_caption(
    sub: SubCategory, attributes: Mapping[str, str], rng: np.random.Generator
) -> tuple[str, str]:
  """(title, description) of a product, Fashion-Gen style.

  The title names every attribute value verbatim; the description names them
  again with synonyms, in 1-3 sentences from several templates.
  """
  colour, pattern = attributes['colour'], attributes['pattern']
  values = [attributes[kind] for kind, _ in sub.attributes]
  noun = sub.nouns[0]
  if pattern == SOLID:
    title = f'solid {colour} {" ".join(values)} {noun}'
  else:
    title = f'{colour} {" ".join(values)} {noun} with {attributes["pattern_colour"]} {pattern}'

  # Description words.
  colour_word = _pick(rng, COLOUR_SYNONYMS[colour])
  noun_word = _pick(rng, sub.nouns)
  features = _join(
      [_pick(rng, ATTRIBUTE_PHRASES[kind][attributes[kind]]) for kind, _ in sub.attributes]
  )
  this, is_, comes = ('These', 'are', 'come') if sub.plural else ('This', 'is', 'comes')
  if pattern == SOLID:
    solid_word = _pick(rng, PATTERN_SYNONYMS[SOLID])
    det = '' if sub.plural else _a(noun_word) + ' '
    colour_sentence = _pick(
        rng,
        (
            f'{colour_word} {noun_word} in a {solid_word} colour.',
            f'{noun_word} in {solid_word} {colour_word}.',
            f'Made in {solid_word} {colour_word}.',
            f'{this} {noun_word} {comes} in {solid_word} {colour_word}.',
        ),
    )
    merged = f'{det}{noun_word} in {solid_word} {colour_word} with {features}.'
  else:
    accent = _pick(rng, COLOUR_SYNONYMS[attributes['pattern_colour']])
    motif = f'{accent} {_pick(rng, PATTERN_SYNONYMS[pattern])}'
    det = '' if sub.plural else _a(colour_word) + ' '
    colour_sentence = _pick(
        rng,
        (
            f'{colour_word} {noun_word} with {motif}.',
            f'Made in {colour_word} with {motif} throughout.',
            f'{this} {noun_word} {is_} {colour_word} with {motif}.',
            f'{motif} on a {colour_word} ground.',
        ),
    )
    merged = f'{det}{colour_word} {noun_word} with {motif}, featuring {features}.'
  feature_sentence = _pick(
      rng,
      (
          f'Features {features}.',
          f'Designed with {features}.',
          f'Detailed with {features}.',
          f'Cut with {features}.',
      ),
  )
  detail_sentence = _pick(rng, sub.details)
  layout = int(rng.integers(4))
  sentences = (
      [merged],
      [colour_sentence, feature_sentence],
      [colour_sentence, feature_sentence, detail_sentence],
      [merged, detail_sentence],
  )[layout]
  return _capitalise(title), ' '.join(_capitalise(s) for s in sentences)
