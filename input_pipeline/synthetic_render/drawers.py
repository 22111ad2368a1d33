"""Drawers: attribute values -> shapes. One per sub-category.

:data:`input_pipeline.synthetic_render.catalog_table.CATALOG` names the drawer
of each sub-category.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from input_pipeline.synthetic_render.garment_parts import (
    _hem_band,
    _hood,
    _lapels,
    _neckline,
    _rib_lines,
    _sleeve,
    _sleeve_frame,
    _torso,
)
from input_pipeline.synthetic_render.shapes import (
    BODY,
    DETAIL_WIDTH,
    LACE,
    LINE,
    METAL,
    SHADE,
    SOLE_DARK,
    SOLE_LIGHT,
    STRAP_WIDTH,
    TRIM,
    Shape,
    _along,
    _arc,
    _bezier,
    _both_sides,
    _buttons,
    _ellipse,
    _pts,
    _rect,
    _symmetric,
    fill,
    line,
)


def _draw_t_shirt(a: Mapping[str, str]) -> list[Shape]:
  neck_w, length = 0.13, 1.0
  shapes = []
  if a['sleeve'] == 'sleeveless':
    torso = _torso(neck_w, (0.27, 0.03), (0.37, 0.36), 0.37, length, armhole_inset=0.07)
  else:
    shoulder, armpit = (0.40, 0.06), (0.36, 0.33)
    angle, sleeve_len, cuff = (62, 0.28, 0.2) if a['sleeve'] == 'short-sleeve' else (24, 0.8, 0.15)
    shapes += _both_sides(_sleeve(shoulder, armpit, angle, sleeve_len, cuff))
    torso = _torso(neck_w, shoulder, armpit, 0.37, length)
  shapes.append(fill(BODY, torso))
  shapes += _neckline(a['neckline'], neck_w)
  shapes.append(line(LINE, [(-0.37, length - 0.04), (0.37, length - 0.04)]))
  return shapes


def _draw_tank_top(a: Mapping[str, str]) -> list[Shape]:
  strap_w = 0.05 if a['strap'] == 'thin-strap' else 0.13
  strap_x, length = 0.19, 1.0
  inner, outer = strap_x - strap_w / 2, strap_x + strap_w / 2
  armpit = (0.34, 0.42)
  right = np.concatenate(
      [
          _arc(0.0, 0.0, inner, 0.16, 90, 0, 8),  # back neckline
          _pts((outer, 0.0)),
          _bezier((outer, 0.0), (outer - 0.02, armpit[1]), armpit, 10)[1:],
          _pts((0.36, length), (0.0, length)),
      ]
  )
  back = _arc(0.0, 0.0, inner, 0.16, 180, 0, 10)
  depth = 0.42 if a['neckline'] == 'scoop-neck' else 0.5
  if a['neckline'] == 'scoop-neck':
    front = _arc(0.0, 0.0, inner, depth, 0, 180, 16)
    band = _arc(0.0, 0.0, inner + 0.025, depth + 0.025, 180, 0, 16)
  else:
    front = _pts((inner, 0.0), (0.0, depth), (-inner, 0.0))
    band = _pts((-inner - 0.025, 0.0), (0.0, depth + 0.04), (inner + 0.025, 0.0))
  armhole_band = [
      line(
          LINE,
          _bezier(
              (outer - 0.025, 0.0),
              (outer - 0.045, armpit[1] + 0.025),
              (armpit[0] - 0.005, armpit[1] + 0.025),
              10,
          ),
      )
  ]
  return (
      [
          fill(BODY, _symmetric(right)),
          fill(SHADE, np.concatenate([back, front])),
          fill(TRIM, np.concatenate([front, band])),
      ]
      + _both_sides(armhole_band)
      + [line(LINE, [(-0.36, length - 0.04), (0.36, length - 0.04)])]
  )


def _draw_shirt(a: Mapping[str, str]) -> list[Shape]:
  neck_w, length = 0.11, 1.02
  shoulder, armpit = (0.40, 0.07), (0.36, 0.34)
  if a['sleeve'] == 'short-sleeve':
    sleeve = _sleeve(shoulder, armpit, 60, 0.3, 0.2)
  else:
    sleeve = _sleeve(shoulder, armpit, 20, 0.86, 0.14, cuff_h=0.09)
    along, across = _sleeve_frame(20)
    cuff_button = np.asarray(shoulder) + 0.81 * along + 0.07 * across
    sleeve.append(fill(SHADE, _ellipse(*cuff_button, 0.014, 0.014, 8)))
  shapes = _both_sides(sleeve)
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.37, length - 0.05, hem_curve=0.06)))
  # Button placket down the centre front, chest pocket.
  shapes += [line(LINE, [(x, 0.1), (x, length)]) for x in (-0.035, 0.035)]
  shapes += _buttons([0.0], np.arange(0.17, length - 0.05, 0.15))
  shapes.append(line(LINE, _rect(0.11, 0.3, 0.25, 0.46), closed=True))
  shapes.append(line(LINE, [(0.11, 0.34), (0.25, 0.34)]))
  # Collar (above the placket).
  shapes.append(fill(SHADE, _pts((-neck_w, 0.0), (neck_w, 0.0), (0.0, 0.1))))
  if a['collar'] == 'point-collar':
    band = _rect(-neck_w - 0.01, -0.05, neck_w + 0.01, 0.01)
    leaf = _pts((0.005, 0.1), (neck_w + 0.01, -0.04), (neck_w + 0.06, 0.02), (0.1, 0.19))
    shapes += [fill(BODY, band, layer=1)] + _both_sides([fill(BODY, leaf, layer=1)])
  else:
    band = np.concatenate(
        [
            _pts((-neck_w - 0.01, -0.06), (neck_w + 0.01, -0.06)),
            _arc(0.0, -0.01, neck_w + 0.01, 0.11, 0, 180, 12),
        ]
    )
    inner = np.concatenate(
        [
            _pts((-neck_w + 0.01, -0.045), (neck_w - 0.01, -0.045)),
            _arc(0.0, -0.035, neck_w - 0.01, 0.03, 0, 180, 10),
        ]
    )
    shapes += [
        fill(BODY, band, layer=1),
        fill(SHADE, inner, layer=1),
        fill(SHADE, _rect(-0.005, 0.03, 0.005, 0.1), layer=1, outline=False),
    ]
  return shapes


def _draw_sweater(a: Mapping[str, str]) -> list[Shape]:
  neck_w = 0.13
  length = 0.72 if a['fit'] == 'cropped' else 1.15
  shoulder, armpit = (0.44, 0.1), (0.40, 0.38)
  shapes = _both_sides(_sleeve(shoulder, armpit, 20, 0.86, 0.15, cuff_h=0.09))
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.38, length)))
  shapes += _hem_band(0.38, length - 0.09, length, bottom_half_w=0.36)
  neck = _neckline(
      a['neckline'], neck_w, depth=0.32 if a['neckline'] == 'v-neck' else None, band=0.035
  )
  shapes += neck
  return shapes


def _draw_hoodie(a: Mapping[str, str]) -> list[Shape]:
  neck_w = 0.12
  length = 0.72 if a['fit'] == 'cropped' else 1.12
  zip_up = a['closure'] == 'zip-up'
  shoulder, armpit = (0.43, 0.09), (0.40, 0.37)
  shapes = _hood(layer=0, open_front=zip_up)
  shapes += _both_sides(_sleeve(shoulder, armpit, 20, 0.86, 0.15, cuff_h=0.09, layer=2))
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.38, length), layer=2))
  shapes += _hem_band(0.38, length - 0.09, length, bottom_half_w=0.36, layer=2)
  shapes.append(fill(SHADE, _pts((-0.1, 0.02), (0.1, 0.02), (0.0, 0.12)), layer=2))
  for x in (-0.06, 0.06):  # drawstrings with metal tips
    shapes += [
        line(LINE, [(x, 0.08), (x * 1.15, 0.36)], width=DETAIL_WIDTH, layer=3),
        fill(METAL, _rect(x * 1.15 - 0.012, 0.36, x * 1.15 + 0.012, 0.41), layer=3),
    ]
  pocket_top, pocket_bottom = length * 0.55, length - 0.13
  if zip_up:
    shapes.append(line(METAL, [(0.0, 0.12), (0.0, length)], width=DETAIL_WIDTH, layer=3))
    shapes.append(fill(METAL, _rect(-0.015, 0.13, 0.015, 0.2), layer=3))
    shapes += _both_sides(
        [line(LINE, [(0.14, pocket_top), (0.2, pocket_bottom)], width=DETAIL_WIDTH, layer=3)]
    )
  else:
    pocket = _pts(
        (-0.2, pocket_top), (0.2, pocket_top), (0.27, pocket_bottom), (-0.27, pocket_bottom)
    )
    shapes.append(line(LINE, pocket, closed=True, width=DETAIL_WIDTH, layer=3))
  return shapes


def _draw_cardigan(a: Mapping[str, str]) -> list[Shape]:
  neck_w = 0.12
  length = 0.72 if a['fit'] == 'cropped' else 1.15
  shoulder, armpit = (0.42, 0.08), (0.39, 0.36)
  v_neck = a['neckline'] == 'v-neck'
  depth = 0.42 if v_neck else 0.11
  shapes = _both_sides(_sleeve(shoulder, armpit, 18, 0.86, 0.14, cuff_h=0.08))
  shapes.append(fill(BODY, _torso(neck_w, shoulder, armpit, 0.37, length)))
  shapes += _hem_band(0.37, length - 0.08, length)
  shapes += _neckline(a['neckline'], neck_w, depth=depth)
  # Button band down the centre front.
  shapes.append(fill(TRIM, _rect(-0.03, depth + 0.02, 0.03, length)))
  shapes.append(line(LINE, [(0.0, depth + 0.02), (0.0, length)]))
  shapes += _buttons([0.0], np.linspace(depth + 0.07, length - 0.12, 5 if v_neck else 6))
  return shapes


def _draw_blazer(a: Mapping[str, str]) -> list[Shape]:
  length = 1.0
  double = a['closure'] == 'double-breasted'
  shoulder, armpit = (0.42, 0.04), (0.38, 0.34)
  roll_y = 0.46
  shapes = _both_sides(_sleeve(shoulder, armpit, 14, 0.9, 0.15, hem_stitch=False))
  along, across = _sleeve_frame(14)
  cuff = np.asarray(shoulder) + 0.84 * along
  shapes += _both_sides(_buttons([cuff[0] + 0.05 * across[0]], [cuff[1]], 0.012))
  shapes.append(fill(BODY, _torso(0.12, shoulder, armpit, 0.37, length, waist=(0.34, 0.6))))
  shapes += _lapels(a['lapel'] == 'peak-lapel', roll_y)
  # Front edge below the top button, pockets.
  if double:
    shapes.append(line(LINE, [(-0.14, roll_y - 0.02), (-0.14, length)], layer=2))
    shapes += _buttons([-0.09, 0.09], [roll_y + 0.06, roll_y + 0.22])
  else:
    shapes.append(
        line(
            LINE,
            np.concatenate(
                [
                    _pts((0.02, roll_y)),
                    _bezier((0.02, length - 0.12), (0.02, length), (0.12, length), 6),
                ]
            ),
            layer=2,
        )
    )
    shapes += _buttons([0.02], [roll_y + 0.06, roll_y + 0.22])
  shapes += _both_sides([line(LINE, _rect(0.19, 0.7, 0.33, 0.76), closed=True, layer=2)])
  shapes.append(line(LINE, [(0.2, 0.34), (0.31, 0.32)], width=DETAIL_WIDTH, layer=2))
  return shapes


def _quilted_side(
    p0, p1, n: int, bulge: float, outward: np.ndarray, points_per_channel: int = 5
) -> np.ndarray:
  """Points from p0 to p1 (excluded) bulging outwards between n channels."""
  p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
  t = np.linspace(0.0, 1.0, n * points_per_channel + 1)[:-1]
  swell = np.abs(np.sin(np.pi * n * t))[:, None]
  return p0 + t[:, None] * (p1 - p0) + bulge * swell * np.asarray(outward)


def _draw_puffer_jacket(a: Mapping[str, str]) -> list[Shape]:
  length = 0.78 if a['fit'] == 'cropped' else 1.15
  shoulder, armpit = (0.44, 0.07), (0.44, 0.36)
  channels = round((length - armpit[1]) / 0.13)
  shapes = []
  if a['collar'] == 'hooded':
    shapes += _hood(layer=0, open_front=True)
    shapes.append(line(LINE, _arc(0.0, -0.1, 0.21, 0.26, 200, 340, 10), layer=1))
  # Sleeves: thick, with bulging outer edges and channels across.
  angle, sleeve_len, cuff = 16, 0.84, 0.2
  along, across = _sleeve_frame(angle)
  top_end = np.asarray(shoulder) + sleeve_len * along
  bottom_end = top_end + cuff * across
  n_sleeve = 6
  outer = _quilted_side(shoulder, top_end, n_sleeve, 0.025, -across)
  inner = _quilted_side(bottom_end, armpit, n_sleeve, 0.02, across)
  sleeve = [fill(BODY, np.concatenate([outer, _pts(top_end, bottom_end), inner]), layer=2)]
  for k in range(1, n_sleeve):
    t = k / n_sleeve
    sleeve.append(
        line(
            LINE,
            [
                np.asarray(shoulder) + t * (top_end - shoulder),
                np.asarray(armpit) + t * (bottom_end - armpit),
            ],
            layer=2,
        )
    )
  shapes += _both_sides(sleeve)
  side = _quilted_side(armpit, (0.43, length), channels, 0.035, np.array([1.0, 0.0]))[1:]
  shapes.append(fill(BODY, _torso(0.13, shoulder, armpit, 0.43, length, side_points=side), layer=2))
  ys = np.linspace(armpit[1], length, channels + 1)[:-1]
  shapes += [line(LINE, [(-0.43, y), (0.43, y)], layer=2) for y in np.concatenate([[0.2], ys])]
  if a['collar'] == 'stand-collar':
    collar = np.concatenate(
        [_pts((-0.15, -0.1), (0.15, -0.1)), _arc(0.0, 0.0, 0.15, 0.1, 0, 180, 10)]
    )
    shapes += [
        fill(BODY, collar, layer=3),
        fill(SHADE, _ellipse(0.0, -0.1, 0.14, 0.035, 14), layer=3),
    ]
  else:
    shapes.append(fill(SHADE, _pts((-0.13, 0.0), (0.13, 0.0), (0.0, 0.08)), layer=2))
  shapes.append(
      line(
          METAL,
          [(0.0, -0.1 if a['collar'] == 'stand-collar' else 0.06), (0.0, length)],
          width=DETAIL_WIDTH,
          layer=4,
      )
  )
  return shapes


def _draw_coat(a: Mapping[str, str]) -> list[Shape]:
  length = 1.4 if a['length'] == 'knee-length' else 1.95
  double = a['closure'] == 'double-breasted'
  shoulder, armpit = (0.42, 0.05), (0.38, 0.35)
  roll_y = 0.5
  hem_w = 0.42 + 0.04 * (length - 1.4)
  shapes = _both_sides(_sleeve(shoulder, armpit, 12, 0.95, 0.16, hem_stitch=False))
  along, across = _sleeve_frame(12)
  tab = np.asarray(shoulder) + 0.83 * along
  shapes += _both_sides(
      [
          fill(
              TRIM,
              np.stack(
                  [tab, tab + 0.05 * along, tab + 0.05 * along + 0.16 * across, tab + 0.16 * across]
              ),
          )
      ]
  )
  shapes.append(fill(BODY, _torso(0.12, shoulder, armpit, hem_w, length, waist=(0.36, 0.62))))
  shapes += _lapels(False, roll_y)
  rows = np.arange(roll_y + 0.06, length * 0.72, 0.16)
  if double:
    shapes.append(line(LINE, [(-0.14, roll_y - 0.02), (-0.14, length)], layer=2))
    shapes += _buttons([-0.1, 0.1], rows)
  else:
    shapes.append(line(LINE, [(0.02, roll_y), (0.02, length)], layer=2))
    shapes += _buttons([0.02], rows)
  shapes += _both_sides([line(LINE, _rect(0.2, 0.78, 0.35, 0.85), closed=True, layer=2)])
  return shapes


def _dress_bodice(sleeve: str, neckline: str, waist_y: float) -> tuple[list[Shape], list]:
  """Sleeves and right-half torso points (neck to waist) of a dress bodice."""
  neck_w = 0.12
  if sleeve == 'sleeveless':
    shoulder, armpit = (0.22, 0.03), (0.3, 0.3)
    sleeves, inset = [], 0.05
  else:
    shoulder, armpit = (0.3, 0.05), (0.29, 0.3)
    angle, sleeve_len, cuff = (60, 0.24, 0.16) if sleeve == 'short-sleeve' else (16, 0.7, 0.1)
    sleeves, inset = _both_sides(_sleeve(shoulder, armpit, angle, sleeve_len, cuff)), 0.0
  right = [_arc(0.0, 0.0, neck_w, 0.035, 90, 0, 8), _pts(shoulder)]
  if inset:
    control = (shoulder[0] - inset, armpit[1])
    right.append(_bezier(shoulder, control, armpit, 10)[1:])
  else:
    right.append(_pts(armpit))
  right.append(_pts((0.23, waist_y)))
  return sleeves + _neckline(neckline, neck_w, layer=1, depth=None), right


_DRESS_SKIRT_LENGTHS = {'mini': 0.42, 'knee-length': 0.62, 'midi': 0.85, 'maxi': 1.3}


def _draw_a_line_dress(a: Mapping[str, str]) -> list[Shape]:
  waist_y = 0.5
  skirt = _DRESS_SKIRT_LENGTHS[a['length']]
  hem_y, hem_w = waist_y + skirt, 0.23 + 0.5 * skirt
  details, right = _dress_bodice(a['sleeve'], 'crew-neck', waist_y)
  right.append(_arc(0.0, hem_y, hem_w, 0.05, 0, 90, 10))
  body = fill(BODY, _symmetric(np.concatenate(right)))
  seam = line(LINE, [(-0.23, waist_y), (0.23, waist_y)], width=DETAIL_WIDTH, layer=1)
  folds = [
      line(LINE, [(x * 0.23, waist_y + 0.03), (x * hem_w * 0.85, hem_y - 0.02)], layer=1)
      for x in (-0.5, 0.5)
  ]
  return details + [body, seam] + folds


def _draw_sheath_dress(a: Mapping[str, str]) -> list[Shape]:
  skirt = _DRESS_SKIRT_LENGTHS[a['length']]
  waist_y, hip_y = 0.5, 0.72
  hem_y = waist_y + skirt + 0.1
  details, right = _dress_bodice('sleeveless', a['neckline'], waist_y)
  right += [
      _bezier((0.23, waist_y), (0.33, hip_y - 0.12), (0.31, hip_y), 8)[1:],
      _pts((0.27, hem_y), (0.0, hem_y)),
  ]
  body = fill(BODY, _symmetric(np.concatenate(right)))
  darts = _both_sides(
      [line(LINE, [(0.13, waist_y - 0.15), (0.14, waist_y), (0.15, hip_y - 0.02)], layer=1)]
  )
  vent = line(LINE, [(0.0, hem_y - 0.12), (0.0, hem_y)], width=DETAIL_WIDTH, layer=1)
  return details + [body] + darts + [vent]


def _draw_slip_dress(a: Mapping[str, str]) -> list[Shape]:
  skirt = _DRESS_SKIRT_LENGTHS[a['length']]
  top_y, waist_y = 0.32, 0.6
  hem_y, hem_w = waist_y + skirt, 0.25 + 0.28 * skirt
  right = np.concatenate(
      [
          _pts((0.0, top_y), (0.27, top_y - 0.02), (0.28, top_y + 0.06)),
          _pts((0.24, waist_y)),
          _arc(0.0, hem_y, hem_w, 0.04, 0, 90, 10),
      ]
  )
  shapes = [fill(BODY, _symmetric(right))]
  shapes += _both_sides([fill(TRIM, _rect(0.16, 0.0, 0.185, top_y + 0.01), layer=1)])
  if a['neckline'] == 'v-neck':
    shapes.append(
        fill(
            SHADE, _pts((-0.24, top_y - 0.015), (0.24, top_y - 0.015), (0.0, top_y + 0.24)), layer=1
        )
    )
  else:
    shapes.append(line(LINE, [(-0.26, top_y + 0.035), (0.26, top_y + 0.035)], layer=1))
  shapes += [
      line(LINE, [(x * 0.22, waist_y - 0.1), (x * hem_w * 0.8, hem_y - 0.02)], layer=1)
      for x in (-0.45, 0.45)
  ]
  return shapes


_SKIRT_LENGTHS = {'mini': 0.5, 'knee-length': 0.8, 'midi': 1.0, 'maxi': 1.45}


def _waist(belted: bool, half_w: float, height: float = 0.09, layer: int = 1) -> list[Shape]:
  """A waistband, with a belt and buckle or with a button."""
  shapes = [fill(TRIM, _rect(-half_w, 0.0, half_w, height), layer=layer)]
  if belted:
    shapes += [
        fill(SHADE, _rect(-half_w, 0.015, half_w, height - 0.015), layer=layer),
        fill(METAL, _rect(-0.05, -0.005, 0.05, height + 0.005), layer=layer + 1),
        fill(SHADE, _rect(-0.032, 0.015, 0.032, height - 0.015), layer=layer + 1, outline=False),
    ]
  else:
    shapes += _buttons([0.0], [height / 2], 0.016)
  return shapes


def _draw_pleated_skirt(a: Mapping[str, str]) -> list[Shape]:
  skirt = _SKIRT_LENGTHS[a['length']]
  waist_w, hem_y = 0.3, 0.09 + skirt
  hem_w = waist_w + 0.35 * skirt
  n_pleats = 12
  xs = np.linspace(-hem_w, hem_w, 2 * n_pleats + 1)
  hem = np.stack([xs, hem_y + 0.015 * (np.arange(xs.size) % 2)], axis=1)[::-1]
  body = np.concatenate([_pts((-waist_w, 0.05), (waist_w, 0.05)), hem])
  pleats = [
      line(LINE, [(x * waist_w / hem_w, 0.09), (x, hem_y)])
      for x in np.linspace(-hem_w, hem_w, n_pleats + 1)[1:-1]
  ]
  return [fill(BODY, body)] + pleats + _waist(a['belt'] == 'belted', waist_w + 0.005)


def _draw_pencil_skirt(a: Mapping[str, str]) -> list[Shape]:
  skirt = _SKIRT_LENGTHS[a['length']]
  hem_y = 0.09 + skirt
  right = _pts(
      (0.0, 0.05), (0.27, 0.05), (0.32, 0.3), (0.31, min(0.45, hem_y)), (0.27, hem_y), (0.0, hem_y)
  )
  darts = _both_sides([line(LINE, [(0.14, 0.09), (0.15, 0.25)])])
  vent = line(LINE, [(0.0, hem_y - 0.15 * skirt), (0.0, hem_y)], width=DETAIL_WIDTH)
  return [fill(BODY, _symmetric(right))] + darts + [vent] + _waist(a['belt'] == 'belted', 0.275)


def _trouser_body(
    leg_top_w: float,
    hip_w: float,
    crotch_y: float,
    hem_y: float,
    hem_outer: float,
    hem_inner: float,
) -> np.ndarray:
  """Waist, hips and two legs as one polygon."""
  right = _pts(
      (0.0, 0.05),
      (leg_top_w, 0.05),
      (hip_w, crotch_y - 0.05),
      (hem_outer, hem_y),
      (hem_inner, hem_y),
      (0.0, crotch_y),
  )
  return _symmetric(right)


def _draw_trousers(a: Mapping[str, str]) -> list[Shape]:
  hem_y = 1.0 if a['length'] == 'cropped' else 1.4
  outer, inner = (0.22, 0.07) if a['leg'] == 'slim-leg' else (0.36, 0.015)
  crotch_y = 0.38
  shapes = [fill(BODY, _trouser_body(0.28, 0.3, crotch_y, hem_y, outer, inner))]
  shapes += _both_sides(
      [
          line(LINE, [(0.28, 0.24), (0.17, 0.09)]),  # slant pocket
          line(LINE, [(0.15, 0.12), ((outer + inner) / 2, hem_y)]),  # crease
          line(LINE, [(outer, hem_y - 0.03), (inner, hem_y - 0.03)]),
      ]
  )
  shapes.append(line(LINE, _bezier((0.04, 0.09), (0.04, 0.3), (0.0, 0.32), 6)))  # fly
  shapes += [fill(TRIM, _rect(-0.285, 0.0, 0.285, 0.09), layer=1)]
  shapes += [
      fill(SHADE, _rect(x - 0.012, -0.01, x + 0.012, 0.1), layer=1)
      for x in (-0.2, 0.2, -0.08, 0.08)
  ]
  shapes += _buttons([0.0], [0.045], 0.015)
  return shapes


def _draw_joggers(a: Mapping[str, str]) -> list[Shape]:
  hem_y = 1.0 if a['length'] == 'cropped' else 1.35
  outer, inner, cuff = 0.2, 0.075, 0.09
  crotch_y = 0.4
  shapes = [
      fill(
          BODY, _trouser_body(0.29, 0.32, crotch_y, hem_y - cuff + 0.01, outer + 0.01, inner - 0.01)
      )
  ]
  for sign in (1, -1):
    x0, x1 = sign * inner, sign * outer
    band = _pts(
        (min(x0, x1) + 0.005, hem_y - cuff),
        (max(x0, x1) - 0.005, hem_y - cuff),
        (max(x0, x1) - 0.005, hem_y),
        (min(x0, x1) + 0.005, hem_y),
    )
    shapes.append(fill(TRIM, band, layer=1))
    shapes += _rib_lines(band[[0, 1]], band[[3, 2]], 6, layer=1)
  shapes += _hem_band(0.295, 0.0, 0.11, n_ribs=18, layer=1)
  for x in (-0.04, 0.04):  # drawstring
    shapes += [
        line(LINE, [(x, 0.08), (x * 1.6, 0.3)], width=DETAIL_WIDTH, layer=2),
        fill(METAL, _rect(x * 1.6 - 0.012, 0.3, x * 1.6 + 0.012, 0.34), layer=2),
    ]
  if a['pocket'] == 'zip-pocket':
    shapes += _both_sides(
        [
            line(METAL, [(0.22, 0.15), (0.26, 0.38)], width=DETAIL_WIDTH * 1.5),
            fill(METAL, _rect(0.205, 0.15, 0.235, 0.21)),
        ]
    )
  else:
    shapes += _both_sides(
        [fill(SHADE, _pts((0.17, 0.11), (0.22, 0.11), (0.32, 0.31), (0.32, 0.36)))]
    )
  return shapes


def _draw_shorts(a: Mapping[str, str]) -> list[Shape]:
  hem_y = 0.6 if a['length'] == 'mid-thigh' else 0.86
  outer, inner, crotch_y = 0.36, 0.03, 0.4
  shapes = [fill(BODY, _trouser_body(0.29, 0.32, crotch_y, hem_y, outer, inner))]
  if a['hem'] == 'cuffed':
    shapes += _both_sides(
        [
            fill(
                TRIM,
                _pts(
                    (inner - 0.005, hem_y - 0.08),
                    (outer + 0.012, hem_y - 0.08),
                    (outer + 0.015, hem_y + 0.005),
                    (inner - 0.005, hem_y + 0.005),
                ),
                layer=1,
            )
        ]
    )
  else:
    shapes += _both_sides([line(LINE, [(inner, hem_y - 0.03), (outer, hem_y - 0.03)])])
  shapes += _both_sides([line(LINE, [(0.29, 0.24), (0.18, 0.09)])])
  shapes.append(line(LINE, _bezier((0.04, 0.09), (0.04, 0.3), (0.0, 0.32), 6)))
  shapes += [fill(TRIM, _rect(-0.295, 0.0, 0.295, 0.09), layer=1)]
  shapes += [
      fill(SHADE, _rect(x - 0.012, -0.01, x + 0.012, 0.1), layer=1)
      for x in (-0.21, 0.21, -0.09, 0.09)
  ]
  shapes += _buttons([0.0], [0.045], 0.015)
  return shapes


# Shoes: side view of a right shoe, toe on the left, ground at y = 0.
_HEEL_HEIGHTS = {'flat': 0.04, 'mid-heel': 0.16, 'high-heel': 0.32}
_SHOE_BACK_X = 0.56


def _shoe_base(
    heel: str, sole_t: float, sole_role: str, toe: str = 'round-toe'
) -> tuple[list[Shape], np.ndarray]:
  """The sole and heel of a shoe, and its insole line (toe -> heel back, [N, 2])."""
  heel_h = _HEEL_HEIGHTS[heel]
  toe_x = -0.74 if toe == 'pointed-toe' else -0.62
  seat_y = -heel_h - sole_t
  insole = np.concatenate(
      [
          _pts((toe_x, -sole_t * 0.8)),
          _bezier((toe_x + 0.12, -sole_t), (-0.2, -sole_t), (-0.2, -sole_t), 3)[:1],
          _bezier((-0.2, -sole_t), (0.1, -sole_t), (0.32, seat_y), 8),
          _pts((_SHOE_BACK_X, seat_y)),
      ]
  )
  # Forefoot sole on the ground, arch lifted, heel seat.
  bottom = insole + np.array([0.0, sole_t])
  bottom[0] = (toe_x + 0.05, -0.01)
  sole = np.concatenate([insole, bottom[::-1]])
  shapes = [fill(sole_role, sole, layer=2)]
  if heel_h > sole_t:
    top_y = seat_y + sole_t
    if heel == 'high-heel':
      block = _pts(
          (0.34, top_y), (_SHOE_BACK_X, top_y), (0.52, 0.0), (0.47, 0.0), (0.45, top_y * 0.5)
      )
    else:
      block = _pts((0.36, top_y), (_SHOE_BACK_X, top_y), (0.54, 0.0), (0.41, 0.0))
    shapes.append(fill(sole_role, block, layer=2))
  elif heel == 'flat':
    shapes.append(line(LINE, [(0.3, -0.01), (0.33, seat_y + sole_t)], layer=3))
  return shapes, insole


def _draw_sneakers(a: Mapping[str, str]) -> list[Shape]:
  high = a['height'] == 'high-top'
  sole = np.concatenate(
      [_arc(-0.52, -0.06, 0.1, 0.06, 90, 270, 8), _arc(0.5, -0.06, 0.1, 0.06, -90, 90, 8)]
  )
  if high:
    collar = _pts((-0.02, -0.84), (0.08, -0.9), (0.46, -0.88), (0.55, -0.62))
    eyestay_end = (0.03, -0.8)
  else:
    collar = _pts((0.0, -0.52), (0.1, -0.5), (0.3, -0.44), (0.52, -0.5))
    eyestay_end = (0.0, -0.47)
  upper = np.concatenate(
      [
          _pts((-0.6, -0.1)),
          _arc(-0.44, -0.12, 0.17, 0.16, 180, 260, 6),
          _pts((-0.25, -0.33), (-0.06, -0.45)),
          collar,
          _pts((0.6, -0.3), (0.6, -0.1)),
      ]
  )
  shapes = [fill(BODY, upper, layer=0)]
  shapes.append(
      line(LINE, _arc(-0.4, -0.11, 0.15, 0.13, 185, 268, 6), width=DETAIL_WIDTH, layer=1)
  )  # toe cap
  shapes.append(
      fill(
          TRIM,
          np.concatenate([_pts((0.46, -0.12)), collar[-1:], _pts((0.6, -0.3), (0.6, -0.12))]),
          layer=1,
      )
  )  # heel counter
  start = np.array([-0.3, -0.31])
  direction = np.asarray(eyestay_end) - start
  across = np.array([direction[1], -direction[0]]) / np.linalg.norm(direction)
  shapes.append(
      line(LINE, _along(start, eyestay_end, 2) - 0.06 * across, width=DETAIL_WIDTH, layer=1)
  )  # eyestay
  if high:
    shapes.append(fill(TRIM, _ellipse(0.36, -0.55, 0.06, 0.06, 12), layer=1))
  if a['fastening'] == 'lace-up':
    n = 7 if high else 4
    centre = _along(start + 0.08 * direction, eyestay_end, n) - 0.11 * across
    low, high_side = centre - 0.04 * across, centre + 0.04 * across
    for k in range(n - 1):
      for p, q in ((low[k], high_side[k + 1]), (high_side[k], low[k + 1])):
        shapes += [
            line(LINE, [p, q], width=DETAIL_WIDTH * 2.4, layer=2),
            line(LACE, [p, q], width=DETAIL_WIDTH * 1.3, layer=2),
        ]
    shapes += [
        fill(SHADE, _ellipse(*p, 0.012, 0.012, 8), layer=3, outline=False)
        for p in np.concatenate([low, high_side])
    ]
  else:
    for c in _along(start + 0.2 * direction, start + 0.8 * direction, 3 if high else 2):
      along = 0.045 * direction / np.linalg.norm(direction)
      strap = np.stack(
          [
              c + 0.01 * across - along,
              c + 0.01 * across + along,
              c - 0.26 * across + along,
              c - 0.26 * across - along,
          ]
      )
      shapes.append(fill(SHADE, strap, layer=2))
  shapes += [
      fill(SOLE_LIGHT, sole, layer=3),
      line(LINE, [(-0.55, -0.065), (0.55, -0.065)], layer=3),
  ]
  return shapes


def _draw_boots(a: Mapping[str, str]) -> list[Shape]:
  sole_t = 0.06
  base, insole = _shoe_base(a['heel'], sole_t, SOLE_DARK)
  seat_y = insole[-1, 1]
  top_y = seat_y - (0.55 if a['height'] == 'ankle' else 1.35)
  lift = _HEEL_HEIGHTS[a['heel']]
  upper = np.concatenate(
      [
          insole,
          _pts(
              (0.58, seat_y - 0.25),
              (0.46, seat_y - 0.45),
              (0.46, top_y),
              (0.02, top_y),
              (0.02 - 0.04 * lift, -sole_t - 0.4 - lift * 0.5),
          ),
          _bezier(
              (-0.2, -sole_t - 0.3 - lift * 0.3), (-0.55, -sole_t - 0.25), (-0.62, -sole_t * 0.8), 8
          ),
      ]
  )
  shapes = [fill(BODY, upper, layer=0)]
  shapes.append(line(LINE, [(0.02, top_y + 0.04), (0.46, top_y + 0.04)], layer=1))
  shapes.append(line(LINE, [(0.4, top_y + 0.08), (0.4, seat_y - 0.1)], width=DETAIL_WIDTH, layer=1))
  shapes.append(fill(METAL, _rect(0.385, top_y + 0.08, 0.415, top_y + 0.15), layer=1))
  tab = np.concatenate(
      [
          _pts((0.44, top_y + 0.02)),
          _arc(0.47, top_y, 0.05, 0.06, 180, 360, 8)[1:],
          _pts((0.5, top_y + 0.02)),
      ]
  )
  shapes.append(fill(TRIM, tab, layer=1))
  return shapes + base


def _draw_pumps(a: Mapping[str, str]) -> list[Shape]:
  sole_t = 0.025
  base, insole = _shoe_base(a['heel'], sole_t, SHADE, a['toe'])
  seat_y = insole[-1, 1]
  lift = _HEEL_HEIGHTS[a['heel']]
  throat = (-0.16, -sole_t - 0.2 - lift * 0.45)
  back_top = (_SHOE_BACK_X + 0.01, seat_y - 0.22)
  toe_tip = insole[0]
  if a['toe'] == 'pointed-toe':
    vamp = _bezier(throat, (-0.46, -sole_t - 0.16), (toe_tip[0], toe_tip[1] - 0.01), 8)
  else:
    vamp = np.concatenate(
        [
            _bezier(throat, (-0.42, -sole_t - 0.22), (-0.53, -sole_t - 0.15), 6),
            _arc(-0.5, -sole_t * 0.8, 0.12, 0.14, 250, 180, 5)[1:],
        ]
    )
  topline = _bezier(back_top, (0.2, seat_y - 0.04), throat, 10)
  opening = np.concatenate([topline, _bezier(throat, (0.2, seat_y - 0.13), back_top, 10)])
  return [fill(BODY, np.concatenate([insole, topline, vamp])), fill(SHADE, opening, layer=1)] + base


def _draw_loafers(a: Mapping[str, str]) -> list[Shape]:
  sole_t = 0.05
  base, insole = _shoe_base(a['heel'], sole_t, SOLE_DARK)
  seat_y = insole[-1, 1]
  lift = _HEEL_HEIGHTS[a['heel']]
  throat = (-0.1, -sole_t - 0.33 - lift * 0.45)
  back_top = (_SHOE_BACK_X + 0.01, seat_y - 0.27)
  vamp = np.concatenate(
      [
          _bezier(throat, (-0.46, -sole_t - 0.36), (-0.57, -sole_t - 0.2), 7),
          _arc(-0.5, -sole_t * 0.8, 0.12, 0.16, 240, 180, 5)[1:],
      ]
  )
  topline = _bezier(back_top, (0.2, seat_y - 0.17), throat, 10)
  opening = np.concatenate([topline, _bezier(throat, (0.2, seat_y - 0.24), back_top, 10)])
  shapes = [fill(BODY, np.concatenate([insole, topline, vamp])), fill(SHADE, opening, layer=1)]
  apron = _bezier((-0.14, throat[1] + 0.03), (-0.5, throat[1] + 0.02), (-0.58, -sole_t - 0.1), 8)
  shapes.append(line(LINE, apron, width=DETAIL_WIDTH, layer=1))  # moc-toe seam
  strap_y = throat[1] + 0.07
  if a['vamp'] == 'penny-strap':
    strap = _pts(
        (-0.36, strap_y - 0.03),
        (-0.08, strap_y - 0.06),
        (-0.06, strap_y + 0.06),
        (-0.36, strap_y + 0.07),
    )
    shapes += [
        fill(SHADE, strap, layer=2),
        fill(LINE, _ellipse(-0.21, strap_y + 0.005, 0.045, 0.016, 10), layer=2),
    ]
  elif a['vamp'] == 'tassel':
    for dx in (0.0, 0.08):
      knot = np.array([-0.2 + dx, strap_y - 0.03])
      shapes += [
          line(LINE, [knot, knot + (-0.05, 0.1)], width=DETAIL_WIDTH, layer=2),
          fill(
              TRIM,
              _pts(
                  knot + (-0.08, 0.09),
                  knot + (-0.03, 0.09),
                  knot + (-0.01, 0.21),
                  knot + (-0.11, 0.21),
              ),
              layer=2,
          ),
      ]
  else:  # horsebit
    shapes += [fill(METAL, _rect(-0.3, strap_y - 0.02, -0.07, strap_y + 0.015), layer=2)]
    shapes += [
        line(METAL, _ellipse(x, strap_y, 0.04, 0.04, 12), closed=True, width=DETAIL_WIDTH, layer=2)
        for x in (-0.33, -0.04)
    ]
  return shapes + base


# Bags: front view.
def _handle(
    x0: float, x1: float, y: float, height: float, role: str = SHADE, width: float = STRAP_WIDTH
) -> Shape:
  """A loop handle from (x0, y) to (x1, y) rising ``height`` above."""
  cx, rx = (x0 + x1) / 2, abs(x1 - x0) / 2
  return line(role, _arc(cx, y, rx, height, 180, 360, 16), width=width)


def _draw_tote_bag(a: Mapping[str, str]) -> list[Shape]:
  long_handle = a['handle'] == 'long-handle'
  body = _pts((-0.46, 0.0), (0.46, 0.0), (0.4, 0.82), (-0.4, 0.82))
  height = 0.75 if long_handle else 0.3
  shapes = [
      _handle(-0.3, -0.12, 0.02, height),
      _handle(0.12, 0.3, 0.02, height),
      fill(BODY, body, layer=1),
      line(LINE, [(-0.455, 0.06), (0.455, 0.06)], layer=1),
  ]
  for x in (-0.3, -0.12, 0.12, 0.3):
    shapes.append(fill(SHADE, _rect(x - 0.025, 0.0, x + 0.025, 0.1), layer=1))
  if a['pocket'] == 'front-pocket':
    shapes += [
        fill(BODY, _rect(-0.26, 0.36, 0.26, 0.7), layer=2),
        line(LINE, [(-0.26, 0.4), (0.26, 0.4)], layer=2),
    ]
  return shapes


def _draw_backpack(a: Mapping[str, str]) -> list[Shape]:
  body = np.concatenate(
      [
          _arc(0.0, 0.25, 0.38, 0.25, 180, 360, 16),
          _arc(0.3, 0.95, 0.08, 0.08, 0, 90, 5),
          _arc(-0.3, 0.95, 0.08, 0.08, 90, 180, 5),
      ]
  )
  shapes = [_handle(-0.1, 0.1, 0.02, 0.14, width=STRAP_WIDTH * 0.8), fill(BODY, body, layer=1)]
  shapes += _both_sides([fill(SHADE, _pts((0.38, 0.3), (0.45, 0.32), (0.43, 0.98), (0.37, 0.95)))])
  if a['flap'] == 'zip-top':
    shapes += [
        line(METAL, _arc(0.0, 0.27, 0.31, 0.2, 190, 350, 14), width=DETAIL_WIDTH, layer=2),
        fill(METAL, _rect(0.25, 0.16, 0.28, 0.26), layer=2),
    ]
  else:
    flap = np.concatenate(
        [
            _arc(0.0, 0.25, 0.385, 0.25, 180, 360, 16),
            _arc(0.26, 0.42, 0.12, 0.1, 0, 90, 5),
            _arc(-0.26, 0.42, 0.12, 0.1, 90, 180, 5),
        ]
    )
    shapes.append(fill(BODY, flap, layer=2))
    for x in (-0.17, 0.17):
      shapes += [
          fill(SHADE, _rect(x - 0.03, 0.3, x + 0.03, 0.65), layer=3),
          fill(METAL, _rect(x - 0.04, 0.47, x + 0.04, 0.52), layer=3),
      ]
  if a['pocket'] == 'front-pocket':
    pocket = np.concatenate(
        [
            _pts((-0.26, 0.66), (0.26, 0.66)),
            _arc(0.18, 0.88, 0.08, 0.08, 0, 90, 5),
            _arc(-0.18, 0.88, 0.08, 0.08, 90, 180, 5),
        ]
    )
    shapes += [
        fill(BODY, pocket, layer=4),
        line(METAL, [(-0.22, 0.71), (0.22, 0.71)], width=DETAIL_WIDTH, layer=4),
    ]
  return shapes


def _draw_crossbody_bag(a: Mapping[str, str]) -> list[Shape]:
  half_w, height = 0.42, 0.52
  body = np.concatenate(
      [
          _pts((-half_w, 0.0), (half_w, 0.0)),
          _arc(half_w - 0.07, height - 0.07, 0.07, 0.07, 0, 90, 5),
          _arc(-half_w + 0.07, height - 0.07, 0.07, 0.07, 90, 180, 5),
      ]
  )
  strap_path = np.concatenate(
      [
          _pts((-half_w + 0.04, 0.02)),
          _arc(0.0, 0.0, half_w - 0.04, 0.85, 180, 360, 20)[1:-1],
          _pts((half_w - 0.04, 0.02)),
      ]
  )
  shapes = []
  if a['bag_strap'] == 'chain-strap':
    d = np.linalg.norm(np.diff(strap_path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(d)])
    for pos in np.arange(0.0, s[-1], 0.045):
      x, y = np.interp(pos, s, strap_path[:, 0]), np.interp(pos, s, strap_path[:, 1])
      shapes.append(
          line(METAL, _ellipse(x, y, 0.022, 0.022, 8), closed=True, width=DETAIL_WIDTH * 0.9)
      )
  else:
    shapes.append(line(SHADE, strap_path, width=STRAP_WIDTH * 0.7))
  shapes.append(fill(BODY, body, layer=1))
  if a['flap'] == 'envelope-flap':
    flap, clasp = _pts((-half_w, 0.0), (half_w, 0.0), (0.0, 0.36)), (0.0, 0.32)
  else:
    flap = np.concatenate(
        [_pts((-half_w, 0.0), (half_w, 0.0)), _arc(0.0, 0.08, half_w, 0.22, 0, 180, 16)]
    )
    clasp = (0.0, 0.26)
  shapes += [fill(BODY, flap, layer=2), fill(METAL, _ellipse(*clasp, 0.035, 0.035, 12), layer=3)]
  return shapes


# Hats.
def _draw_beanie(a: Mapping[str, str]) -> list[Shape]:
  slouchy = a['fit'] == 'slouchy'
  bottom = 0.62
  if slouchy:
    crown = np.concatenate(
        [
            _pts((-0.44, bottom)),
            _bezier((-0.45, 0.1), (-0.38, -0.32), (0.1, -0.3), 10),
            _bezier((0.1, -0.3), (0.6, -0.28), (0.6, 0.14), 10)[1:],
            _bezier((0.6, 0.14), (0.48, 0.2), (0.44, 0.36), 6)[1:],
            _pts((0.44, bottom)),
        ]
    )
  else:
    crown = np.concatenate(
        [_pts((-0.44, bottom)), _arc(0.0, 0.25, 0.44, 0.45, 180, 360, 20), _pts((0.44, bottom))]
    )
  shapes = [fill(BODY, crown)]
  for x in np.linspace(-0.3, 0.3, 5):
    shapes.append(line(LINE, [(x, bottom - 0.05), (x * (1.25 if slouchy else 0.9), 0.05)], layer=1))
  if a['cuff'] == 'cuffed':
    shapes += _hem_band(0.46, bottom - 0.2, bottom, n_ribs=16, layer=2)
  else:
    shapes += _hem_band(0.445, bottom - 0.06, bottom, n_ribs=20, layer=2)
  return shapes


def _draw_baseball_cap(a: Mapping[str, str]) -> list[Shape]:
  crown_h = 0.34 if a['height'] == 'low-profile' else 0.48
  crown = np.concatenate(
      [_arc(0.05, 0.4, 0.42, crown_h, 180, 360, 20), _pts((0.47, 0.44), (-0.37, 0.44))]
  )
  if a['brim'] == 'curved-brim':
    brim = np.concatenate(
        [
            _bezier((-0.35, 0.37), (-0.62, 0.36), (-0.84, 0.56), 8),
            _bezier((-0.84, 0.63), (-0.62, 0.47), (-0.35, 0.47), 8),
        ]
    )
  else:
    brim = _pts((-0.35, 0.38), (-0.88, 0.4), (-0.88, 0.47), (-0.35, 0.47))
  shapes = [fill(BODY, brim), fill(BODY, crown, layer=1)]
  shapes += [line(LINE, _arc(0.05, 0.4, rx, crown_h, 185, 355, 12), layer=1) for rx in (0.16, 0.3)]
  shapes.append(line(LINE, [(0.05, 0.4 - crown_h), (0.05, 0.42)], layer=1))
  shapes.append(fill(TRIM, _ellipse(0.05, 0.4 - crown_h, 0.035, 0.02, 10), layer=2))
  shapes.append(fill(SHADE, _ellipse(0.24, 0.4 - crown_h * 0.7, 0.018, 0.018, 8), layer=2))
  shapes.append(line(LINE, [(-0.37, 0.4), (0.47, 0.4)], layer=1))
  return shapes
