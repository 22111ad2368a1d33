"""The catalog: main category -> sub-categories -> drawer + attributes.

:data:`CATALOG` is data, not code branches; it is checked against the
attribute vocabulary at import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from input_pipeline.errors import SyntheticCatalogError
from input_pipeline.synthetic_render.attributes import ATTRIBUTE_PHRASES
from input_pipeline.synthetic_render.drawers import (
    _draw_a_line_dress,
    _draw_backpack,
    _draw_baseball_cap,
    _draw_beanie,
    _draw_blazer,
    _draw_boots,
    _draw_cardigan,
    _draw_coat,
    _draw_crossbody_bag,
    _draw_hoodie,
    _draw_joggers,
    _draw_loafers,
    _draw_pencil_skirt,
    _draw_pleated_skirt,
    _draw_puffer_jacket,
    _draw_pumps,
    _draw_sheath_dress,
    _draw_shirt,
    _draw_shorts,
    _draw_slip_dress,
    _draw_sneakers,
    _draw_sweater,
    _draw_t_shirt,
    _draw_tank_top,
    _draw_tote_bag,
    _draw_trousers,
)
from input_pipeline.synthetic_render.shapes import Shape


@dataclasses.dataclass(frozen=True)
class SubCategory:
  """One sub-category: a silhouette and the attributes its items vary in.

  Attributes:
    name: the class name, upper case as in Fashion-Gen (e.g. 'T-SHIRTS').
    nouns: the noun of titles first, then synonyms for descriptions.
    plural: the noun is plural ('sneakers', 'trousers').
    attributes: (kind, allowed values) pairs, in the order titles name them;
      kinds and values are keys of ATTRIBUTE_PHRASES.
    draw: attribute values {kind: value} -> shapes.
    details: sentences about features every item of the sub-category shows.
  """

  name: str
  nouns: tuple[str, ...]
  plural: bool
  attributes: tuple[tuple[str, tuple[str, ...]], ...]
  draw: Callable[[Mapping[str, str]], list[Shape]]
  details: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class MainCategory:
  name: str
  subcategories: tuple[SubCategory, ...]


_SLEEVES = ('sleeveless', 'short-sleeve', 'long-sleeve')
_FIT = ('fit', ('cropped', 'longline'))
_BELT = ('belt', ('belted', 'unbelted'))

CATALOG: tuple[MainCategory, ...] = (
    MainCategory(
        'TOPS',
        (
            SubCategory(
                'T-SHIRTS',
                ('t-shirt', 'tee', 'jersey tee'),
                False,
                (('sleeve', _SLEEVES), ('neckline', ('crew-neck', 'v-neck'))),
                _draw_t_shirt,
                ('Ribbed neckband.', 'Stitched hem.', 'Tonal stitching.'),
            ),
            SubCategory(
                'TANK TOPS',
                ('tank top', 'tank', 'vest top'),
                False,
                (('strap', ('thin-strap', 'wide-strap')), ('neckline', ('scoop-neck', 'v-neck'))),
                _draw_tank_top,
                ('Ribbed trim at neckline.', 'Stitched hem.'),
            ),
            SubCategory(
                'SHIRTS',
                ('shirt', 'button-up shirt', 'button-down shirt'),
                False,
                (
                    ('sleeve', ('short-sleeve', 'long-sleeve')),
                    ('collar', ('point-collar', 'band-collar')),
                ),
                _draw_shirt,
                ('Button closure at front.', 'Patch pocket at chest.', 'Shirttail hem.'),
            ),
        ),
    ),
    MainCategory(
        'SWEATERS',
        (
            SubCategory(
                'PULLOVERS',
                ('sweater', 'pullover', 'jumper'),
                False,
                (_FIT, ('neckline', ('crew-neck', 'v-neck', 'turtleneck'))),
                _draw_sweater,
                ('Rib knit cuffs and hem.', 'Dropped shoulders.'),
            ),
            SubCategory(
                'HOODIES',
                ('hoodie', 'hooded sweatshirt'),
                False,
                (_FIT, ('closure', ('pullover', 'zip-up'))),
                _draw_hoodie,
                ('Drawstring at hood.', 'Rib knit cuffs and hem.'),
            ),
            SubCategory(
                'CARDIGANS',
                ('cardigan', 'button-up cardigan', 'knit cardigan'),
                False,
                (_FIT, ('neckline', ('crew-neck', 'v-neck'))),
                _draw_cardigan,
                ('Button closure at front.', 'Rib knit hem and cuffs.'),
            ),
        ),
    ),
    MainCategory(
        'JACKETS & COATS',
        (
            SubCategory(
                'BLAZERS',
                ('blazer', 'tailored jacket', 'suit jacket'),
                False,
                (
                    ('closure', ('single-breasted', 'double-breasted')),
                    ('lapel', ('notch-lapel', 'peak-lapel')),
                ),
                _draw_blazer,
                ('Flap pockets at waist.', 'Welt pocket at chest.', 'Buttoned cuffs.'),
            ),
            SubCategory(
                'PUFFER JACKETS',
                ('puffer jacket', 'down jacket', 'quilted jacket'),
                False,
                (_FIT, ('collar', ('hooded', 'stand-collar'))),
                _draw_puffer_jacket,
                ('Channel quilting throughout.', 'Zip closure at front.'),
            ),
            SubCategory(
                'COATS',
                ('coat', 'overcoat', 'topcoat'),
                False,
                (
                    ('length', ('knee-length', 'ankle-length')),
                    ('closure', ('single-breasted', 'double-breasted')),
                ),
                _draw_coat,
                ('Notch lapels.', 'Flap pockets at waist.', 'Tabs at cuffs.'),
            ),
        ),
    ),
    MainCategory(
        'DRESSES',
        (
            SubCategory(
                'A-LINE DRESSES',
                ('A-line dress', 'flared dress', 'skater dress'),
                False,
                (('sleeve', _SLEEVES), ('length', ('mini', 'midi', 'maxi'))),
                _draw_a_line_dress,
                ('Seam at waist.', 'Flared skirt.', 'Crew neckline.'),
            ),
            SubCategory(
                'SHEATH DRESSES',
                ('sheath dress', 'fitted dress', 'bodycon dress'),
                False,
                (
                    ('neckline', ('crew-neck', 'v-neck')),
                    ('length', ('mini', 'knee-length', 'midi')),
                ),
                _draw_sheath_dress,
                ('Sleeveless.', 'Darts at waist.', 'Vent at hem.'),
            ),
            SubCategory(
                'SLIP DRESSES',
                ('slip dress', 'camisole dress', 'cami dress'),
                False,
                (('neckline', ('straight-neck', 'v-neck')), ('length', ('mini', 'midi', 'maxi'))),
                _draw_slip_dress,
                ('Spaghetti straps.', 'Flared hem.'),
            ),
        ),
    ),
    MainCategory(
        'SKIRTS',
        (
            SubCategory(
                'PLEATED SKIRTS',
                ('pleated skirt', 'pleat skirt', 'knife-pleated skirt'),
                False,
                (_BELT, ('length', ('mini', 'midi', 'maxi'))),
                _draw_pleated_skirt,
                ('Knife pleats throughout.', 'Waistband at top.'),
            ),
            SubCategory(
                'PENCIL SKIRTS',
                ('pencil skirt', 'straight skirt', 'fitted skirt'),
                False,
                (_BELT, ('length', ('mini', 'knee-length', 'midi'))),
                _draw_pencil_skirt,
                ('Vent at hem.', 'Darts at waist.'),
            ),
        ),
    ),
    MainCategory(
        'PANTS',
        (
            SubCategory(
                'TROUSERS',
                ('trousers', 'pants', 'slacks'),
                True,
                (('length', ('cropped', 'full-length')), ('leg', ('slim-leg', 'wide-leg'))),
                _draw_trousers,
                ('Belt loops at waistband.', 'Slant pockets at hips.', 'Pressed creases.'),
            ),
            SubCategory(
                'JOGGERS',
                ('joggers', 'sweatpants', 'track pants'),
                True,
                (
                    ('length', ('cropped', 'full-length')),
                    ('pocket', ('zip-pocket', 'slant-pocket')),
                ),
                _draw_joggers,
                ('Drawstring at elasticated waistband.', 'Rib knit cuffs at leg openings.'),
            ),
            SubCategory(
                'SHORTS',
                ('shorts', 'bermuda shorts', 'chino shorts'),
                True,
                (('length', ('mid-thigh', 'knee-length')), ('hem', ('cuffed', 'plain-hem'))),
                _draw_shorts,
                ('Belt loops at waistband.', 'Zip fly.'),
            ),
        ),
    ),
    MainCategory(
        'SHOES',
        (
            SubCategory(
                'SNEAKERS',
                ('sneakers', 'trainers', 'low-tops'),
                True,
                (('height', ('low-top', 'high-top')), ('fastening', ('lace-up', 'velcro-strap'))),
                _draw_sneakers,
                ('White rubber sole.', 'Round toe.', 'Heel tab.'),
            ),
            SubCategory(
                'BOOTS',
                ('boots', 'leather boots'),
                True,
                (('heel', ('flat', 'mid-heel', 'high-heel')), ('height', ('ankle', 'knee-high'))),
                _draw_boots,
                ('Black rubber sole.', 'Pull-loop at heel collar.', 'Zip closure at side.'),
            ),
            SubCategory(
                'PUMPS',
                ('pumps', 'court shoes', 'heels'),
                True,
                (('heel', ('mid-heel', 'high-heel')), ('toe', ('pointed-toe', 'round-toe'))),
                _draw_pumps,
                ('Slip-on style.', 'Tonal sole.'),
            ),
            SubCategory(
                'LOAFERS',
                ('loafers', 'slip-on loafers', 'moccasins'),
                True,
                (('heel', ('flat', 'mid-heel')), ('vamp', ('penny-strap', 'tassel', 'horsebit'))),
                _draw_loafers,
                ('Moc-toe stitching.', 'Slip-on style.', 'Black rubber sole.'),
            ),
        ),
    ),
    MainCategory(
        'BAGS',
        (
            SubCategory(
                'TOTE BAGS',
                ('tote bag', 'tote', 'shopper bag'),
                False,
                (
                    ('handle', ('short-handle', 'long-handle')),
                    ('pocket', ('front-pocket', 'pocketless')),
                ),
                _draw_tote_bag,
                ('Open top.', 'Twin handles.'),
            ),
            SubCategory(
                'BACKPACKS',
                ('backpack', 'rucksack'),
                False,
                (('flap', ('zip-top', 'flap-top')), ('pocket', ('front-pocket', 'pocketless'))),
                _draw_backpack,
                ('Carry handle at top.', 'Shoulder straps at sides.'),
            ),
            SubCategory(
                'CROSSBODY BAGS',
                ('crossbody bag', 'shoulder bag', 'messenger bag'),
                False,
                (
                    ('flap', ('envelope-flap', 'rounded-flap')),
                    ('bag_strap', ('chain-strap', 'leather-strap')),
                ),
                _draw_crossbody_bag,
                ('Press-stud clasp at flap.', 'Gold-tone hardware.'),
            ),
        ),
    ),
    MainCategory(
        'HATS',
        (
            SubCategory(
                'BEANIES',
                ('beanie', 'knit hat', 'knit beanie'),
                False,
                (('cuff', ('cuffed', 'uncuffed')), ('fit', ('fitted', 'slouchy'))),
                _draw_beanie,
                ('Rib knit throughout.',),
            ),
            SubCategory(
                'CAPS',
                ('baseball cap', 'cap', 'six-panel cap'),
                False,
                (
                    ('height', ('low-profile', 'high-profile')),
                    ('brim', ('curved-brim', 'flat-brim')),
                ),
                _draw_baseball_cap,
                ('Button at crown.', 'Stitched panels.', 'Eyelet vents.'),
            ),
        ),
    ),
)

_SUBCATEGORIES: dict[str, SubCategory] = {s.name: s for m in CATALOG for s in m.subcategories}


def main_categories() -> list[str]:
  """The main category names, in a fixed order (a class list)."""
  return [m.name for m in CATALOG]


def sub_categories() -> list[str]:
  """The sub-category names of all main categories, in a fixed order (a class list)."""
  return [s.name for m in CATALOG for s in m.subcategories]


def _check_catalog() -> None:
  """Fails at import when CATALOG and ATTRIBUTE_PHRASES do not fit together."""
  names = sub_categories()
  if len(set(names)) != len(names):
    raise SyntheticCatalogError('CATALOG: sub-category names are not unique')
  for sub in _SUBCATEGORIES.values():
    for kind, values in sub.attributes:
      for value in values:
        if value not in ATTRIBUTE_PHRASES.get(kind, {}):
          raise SyntheticCatalogError(
              f'CATALOG: {sub.name}: attribute {kind}={value!r} has no phrases'
          )


_check_catalog()
