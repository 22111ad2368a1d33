"""Colours and patterns of the synthetic catalog.

Their RGB values, the words captions use for them, and the colours a pattern
may use on a garment of each main colour.
"""

from __future__ import annotations

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    'black': (24, 24, 27),
    'grey': (128, 129, 134),
    'white': (250, 250, 250),
    'beige': (214, 190, 150),
    'brown': (112, 70, 40),
    'navy': (27, 38, 86),
    'blue': (38, 92, 205),
    'light blue': (138, 190, 236),
    'teal': (0, 128, 128),
    'green': (36, 142, 62),
    'olive': (108, 114, 42),
    'yellow': (242, 202, 38),
    'orange': (240, 124, 28),
    'red': (206, 30, 40),
    'burgundy': (116, 20, 46),
    'pink': (242, 152, 184),
    'purple': (112, 50, 152),
}

# Words the descriptions may use for each colour (the first is the title's).
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    'black': ('black', 'jet black', 'deep black'),
    'grey': ('grey', 'gray', 'mid grey'),
    'white': ('white', 'bright white', 'optic white'),
    'beige': ('beige', 'sand', 'light tan'),
    'brown': ('brown', 'chocolate brown', 'dark brown'),
    'navy': ('navy', 'navy blue', 'dark navy'),
    'blue': ('blue', 'royal blue', 'cobalt blue'),
    'light blue': ('light blue', 'sky blue', 'pale blue'),
    'teal': ('teal', 'teal blue', 'deep teal'),
    'green': ('green', 'emerald green', 'kelly green'),
    'olive': ('olive', 'olive green', 'khaki green'),
    'yellow': ('yellow', 'sunflower yellow', 'bright yellow'),
    'orange': ('orange', 'tangerine', 'bright orange'),
    'red': ('red', 'scarlet', 'bright red'),
    'burgundy': ('burgundy', 'wine', 'oxblood'),
    'pink': ('pink', 'light pink', 'rose pink'),
    'purple': ('purple', 'violet', 'deep purple'),
}

# White garments would vanish on the white background: white is a pattern
# colour only (white stripes, white dots, ...).
MAIN_COLOURS: tuple[str, ...] = tuple(c for c in COLOURS if c != 'white')

SOLID = 'solid'
PATTERNS: tuple[str, ...] = (
    SOLID,
    'horizontal stripes',
    'vertical stripes',
    'diagonal stripes',
    'polka dots',
    'checks',
)
# Sampling weights of PATTERNS (solid items are the most common, as in shops).
PATTERN_WEIGHTS: tuple[float, ...] = (0.3, 0.14, 0.14, 0.14, 0.14, 0.14)
PATTERN_SYNONYMS: dict[str, tuple[str, ...]] = {
    SOLID: ('solid', 'plain', 'single-tone'),
    'horizontal stripes': (
        'horizontal stripes',
        'breton-style horizontal stripes',
        'crosswise stripes',
    ),
    'vertical stripes': ('vertical stripes', 'lengthwise stripes', 'up-and-down stripes'),
    'diagonal stripes': ('diagonal stripes', 'slanted stripes', 'bias stripes'),
    'polka dots': ('polka dots', 'dots', 'spots'),
    'checks': ('checks', 'gingham checks', 'check print'),
}
# A pattern colour must differ from the main colour by this RGB distance.
MIN_PATTERN_CONTRAST = 110.0


def _pattern_colours(main: str) -> tuple[str, ...]:
  """The colours a pattern on a ``main`` garment may use (clearly different)."""
  rgb = np.array(COLOURS[main], np.float64)
  return tuple(
      c
      for c in COLOURS
      if c != main
      and np.linalg.norm(np.array(COLOURS[c], np.float64) - rgb) >= MIN_PATTERN_CONTRAST
  )


PATTERN_COLOURS: dict[str, tuple[str, ...]] = {c: _pattern_colours(c) for c in MAIN_COLOURS}
