"""ITM on a toy where matching needs one attribute: does [CLS] learn "caption colour == image colour"?

The demo's model (configs/demo.py: pvlt_micro, attention init std 0.1, lr 2e-3) at 32x32,
trained with the project's own train step on generated batches: a square of one of the
catalog's 16 garment colours on a white image; the caption ``[CLS] colour noun noun [SEP]``
(the colour as a word id, the two nouns fixed). Half of the pairs are negatives whose
caption names another colour. ITM alone cannot be solved by either side: the label depends
on the *pair*. ``--supervise`` adds the recognition heads on [CLS] as a first-order signal:
``image`` (both heads predict the image's colour), ``text`` (both predict the caption's
colour) or ``both`` (main head: caption colour, sub head: image colour).

  PYTHONPATH=. python docs/experiments/itm_binding_toy.py --supervise=text

Prints the mean ITM loss (and recognition loss) over each 50 steps; ln 2 = 0.693 is chance.
Figures and what they mean: docs/training.md, "Why fine-grained ITM is slow from scratch".
"""

from absl import app
from absl import flags
import jax
import numpy as np

from configs import demo
from input_pipeline.synthetic_render import COLOURS, MAIN_COLOURS
from mvlt_jax import optim, steps
from mvlt_jax.masking import TokenSpec
from mvlt_jax.models import build_model
from mvlt_jax.train_state import create_train_state

FLAGS = flags.FLAGS

IMAGE_SIZE = 32
BATCH = 64
VOCAB = 64
SPECIAL_IDS = (0, 1, 2, 3, 4)  # [PAD], [UNK], [CLS], [SEP], [MASK]
CLS_ID, SEP_ID, MASK_ID = 2, 3, 4
FIRST_COLOUR_ID = 10
NOUN_IDS = (42, 43)
WARMUP_STEPS = 20
LOG_EVERY = 50


def toy_config(supervise: str):
  config = demo.get_config()
  m = config.model
  m.image_size = m.pos_grid_size = IMAGE_SIZE
  m.vocab_size = VOCAB
  m.num_main_classes = m.num_sub_classes = len(MAIN_COLOURS)
  m.heads = ('itm',) if supervise == 'none' else ('itm', 'recognition')
  config.optimizer.base_batch_size = BATCH
  return config


def make_batch(
    rng: np.random.Generator, colours: np.ndarray, text_length: int, supervise: str
) -> dict[str, np.ndarray]:
  num_colours = len(colours)
  image_colour = rng.integers(0, num_colours, BATCH)  # [B]
  negative = rng.random(BATCH) < 0.5
  text_colour = np.where(
      negative, (image_colour + rng.integers(1, num_colours, BATCH)) % num_colours, image_colour
  )  # [B]
  images = np.full((BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), 255, np.uint8)
  lo, hi = IMAGE_SIZE // 4, 3 * IMAGE_SIZE // 4
  images[:, lo:hi, lo:hi] = colours[image_colour][:, None, None, :]
  input_ids = np.zeros((BATCH, text_length), np.int32)  # [B, L], [PAD] = 0
  caption = [
      np.full(BATCH, CLS_ID),
      FIRST_COLOUR_ID + text_colour,
      *[np.full(BATCH, i) for i in NOUN_IDS],
      np.full(BATCH, SEP_ID),
  ]
  input_ids[:, : len(caption)] = np.stack(caption, axis=1)
  main, sub = {
      'none': (image_colour, image_colour),
      'image': (image_colour, image_colour),
      'text': (text_colour, text_colour),
      'both': (text_colour, image_colour),
  }[supervise]
  return dict(
      images=images,
      input_ids=input_ids,
      itm_labels=(~negative).astype(np.int32),
      main_labels=main.astype(np.int32),
      sub_labels=sub.astype(np.int32),
  )


def define_flags():
  """The script's flags; only when run as a script, so that tests can import it."""
  flags.DEFINE_enum(
      'supervise',
      'none',
      ['none', 'image', 'text', 'both'],
      'What the recognition heads predict from [CLS] beside ITM.',
  )
  flags.DEFINE_integer('steps', 400, 'Training steps.')
  flags.DEFINE_integer('seed', 0, 'Seed of the generated batches.')


def main(argv):
  del argv
  supervise = FLAGS.supervise
  num_steps = FLAGS.steps
  config = toy_config(supervise)
  model = build_model(config.model)
  schedule = optim.learning_rate_schedule(config.optimizer, BATCH, WARMUP_STEPS, num_steps)
  optimizer = optim.make_optimizer(config.optimizer, schedule)
  state = jax.jit(lambda: create_train_state(model, config, optimizer))()
  train_step = jax.jit(
      steps.make_train_step(
          model, config, TokenSpec(VOCAB, SPECIAL_IDS, MASK_ID), optimizer, schedule
      ),
      donate_argnums=0,
  )
  colours = np.array([COLOURS[name] for name in MAIN_COLOURS], np.uint8)
  rng = np.random.default_rng(FLAGS.seed)
  window = []  # the losses of the last steps, fetched from the device once per LOG_EVERY
  for step in range(1, num_steps + 1):
    state, metrics = train_step(
        state, make_batch(rng, colours, config.model.text_length, supervise)
    )
    window.append({k: v for k, v in metrics.items() if k.startswith('loss_')})
    if step % LOG_EVERY == 0:
      window = jax.device_get(window)
      means = {k: np.mean([w[k] for w in window]) for k in window[0]}
      print(
          f'step {step}: ' + ', '.join(f'{k}={v:.4f}' for k, v in sorted(means.items())), flush=True
      )
      window = []


if __name__ == '__main__':
  define_flags()
  app.run(main)
