"""Parameter table of a configured model (``config.task = 'summary'``), with no compile."""

import collections

import jax
import numpy as np
from flax import traverse_util

from mvlt_jax.models import build_model
from mvlt_jax.train_state import init_variables


def abstract_variables(model_config, batch_size: int = 1):
  """Shapes and dtypes of the model's variables, from ``jax.eval_shape`` (no FLOPs)."""
  model = build_model(model_config)
  return jax.eval_shape(
      lambda rng: init_variables(model, model_config, rng, batch_size), jax.random.key(0)
  )


def count_parameters(params) -> int:
  """Number of trainable parameters (BatchNorm statistics are not parameters)."""
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def _module_order(name: str) -> tuple:
  """Text embeddings first, then stage by stage (numbered modules), then the heads."""
  if name == 'text_embeddings':
    return (0, 0, name)
  if name[-1].isdigit():
    return (1, int(name[-1]), name)
  return (2, 0, name)


def parameter_table(params) -> list[tuple[str, int]]:
  """(top-level module, parameter count), in the model's order."""
  counts = collections.defaultdict(int)
  for path, leaf in traverse_util.flatten_dict(params).items():
    counts[path[0]] += int(np.prod(leaf.shape))
  return sorted(counts.items(), key=lambda item: _module_order(item[0]))


def format_summary(model_config) -> str:
  notes = []
  heads = tuple(model_config.heads)
  if 'attributes' in heads and not model_config.get('attribute_classes'):
    # Their sizes come from the dataset's attribute labels; the table leaves them out.
    model_config = model_config.copy_and_resolve_references()
    model_config.heads = tuple(head for head in heads if head != 'attributes')
    notes.append(
        '(attribute heads left out: their sizes come from the dataset at training time; set '
        'model.attribute_classes, e.g. "(16, 6)", to include them)'
    )
  if not model_config.vocab_size:
    model_config = model_config.copy_and_resolve_references()
    model_config.vocab_size = 1
    notes.append(
        "(word table and MLM decoder sized from the dataset's tokenizer at training time; "
        'counted here with a vocabulary of 1: set model.vocab_size to include them)'
    )
  variables = abstract_variables(model_config)
  rows = parameter_table(variables['params'])
  width = max(len(name) for name, _ in rows)
  lines = [f'{"module":<{width}}  {"parameters":>12}', '-' * (width + 14)]
  lines += [f'{name:<{width}}  {count:>12,}' for name, count in rows]
  lines.append('-' * (width + 14))
  lines.append(f'parameters: {count_parameters(variables["params"]):,}')
  if 'recognition' in model_config.heads and not (
      model_config.num_main_classes and model_config.num_sub_classes
  ):
    lines.append(
        '(recognition heads sized from the dataset at training time; counted here '
        'with 0 classes: set model.num_main_classes / num_sub_classes to include them)'
    )
  return '\n'.join(lines + notes)
