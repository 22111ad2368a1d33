r"""Where the training step changes dtype on large tensors (docs/performance.md, issue #17).

Traces the jit'd training step of a config (never compiles or runs it) at two batch sizes and
lists every `convert_element_type` with at least `--min_elements` elements per example,
grouped by the innermost line of `mvlt_jax/` that produced it and the library function in
between (flax's LayerNorm, optax's loss ...). The per-example figure is the difference between
the two batch sizes, so parameter-sized casts (the word table once per step) drop out.

  JAX_PLATFORMS=cpu python docs/experiments/dtype_audit.py --config=configs/pretrain.py

This reads the jaxpr, what the model asks for; which casts XLA then fuses away or
materialises is in the device's optimised HLO (XLA_FLAGS=--xla_dump_to=DIR).
"""

import collections
import functools
import os
import sys
from typing import Iterator, NamedTuple

import jax
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mvlt_jax import benchmark  # pylint: disable=wrong-import-position
from mvlt_jax.models import build_model  # pylint: disable=wrong-import-position
from mvlt_jax.train_state import create_train_state  # pylint: disable=wrong-import-position


class CastSite(NamedTuple):
  where: str  # mvlt_jax file:line function [<- library function]
  source_dtype: str
  target_dtype: str


def _nested_jaxprs(eqn) -> Iterator:
  for param in eqn.params.values():
    for value in param if isinstance(param, (list, tuple)) else (param,):
      if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
      elif isinstance(value, jax.extend.core.Jaxpr):
        yield value


def _where(eqn) -> str:
  frames = eqn.source_info.traceback.frames if eqn.source_info.traceback else []
  ours = [f for f in frames if f'{os.sep}mvlt_jax{os.sep}' in f.file_name]
  libraries = [
      f
      for f in frames
      if 'site-packages' in f.file_name and f'{os.sep}jax{os.sep}' not in f.file_name
  ]
  text = '?'
  if ours:
    text = f'{ours[0].file_name.split("mvlt_jax" + os.sep)[-1]}:{ours[0].line_num} '
    text += ours[0].function_name
  if libraries:
    text += f' <- {os.path.basename(libraries[0].file_name)}:{libraries[0].function_name}'
  return text


def cast_elements(jaxpr) -> collections.Counter:
  """Elements converted per CastSite in ``jaxpr`` and every jaxpr nested in it."""
  counts = collections.Counter()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'convert_element_type':
      site = CastSite(_where(eqn), str(eqn.invars[0].aval.dtype), str(eqn.outvars[0].aval.dtype))
      counts[site] += eqn.outvars[0].aval.size
    for nested in _nested_jaxprs(eqn):
      counts.update(cast_elements(nested))
  return counts


def casts_per_example(config, batch_sizes: tuple[int, int] = (2, 4)) -> dict[CastSite, float]:
  """Elements converted per example at each CastSite of ``config``'s training step."""
  token_spec = benchmark.BERT_IDS.token_spec(config.model.vocab_size)
  model = build_model(config.model)
  train_step, optimizer = benchmark._make_step(  # pylint: disable=protected-access
      model, config, token_spec, num_steps=1
  )
  state = jax.eval_shape(functools.partial(create_train_state, model, config, optimizer))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  small, large = batch_sizes
  counts = {}
  for size in batch_sizes:
    batch = benchmark._abstract_batch(config, size, device)  # pylint: disable=protected-access
    counts[size] = cast_elements(jax.make_jaxpr(train_step)(state, batch).jaxpr)
  sites = set(counts[small]) | set(counts[large])
  return {s: (counts[large][s] - counts[small][s]) / (large - small) for s in sites}


def main(argv):
  del argv
  # mvlt_jax.benchmark (imported above) defines --config: this script reads that flag.
  per_example = casts_per_example(flags.FLAGS.config)
  listed = [(n, s) for s, n in per_example.items() if n >= flags.FLAGS.min_elements]
  for elements, site in sorted(listed, reverse=True):
    print(f'{elements / 1e6:8.2f} M  {site.source_dtype:>8} -> {site.target_dtype:<8} {site.where}')
  total = sum(n for n, _ in listed)
  print(f'{total / 1e6:8.2f} M elements per example cast in {len(listed)} places')


if __name__ == '__main__':
  flags.DEFINE_integer('min_elements', 10_000, 'Smallest cast listed, in elements per example.')
  app.run(main)
