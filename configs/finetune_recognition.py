"""Fine-tuning MVLT for main / sub-category recognition (the paper: 30 epochs, no masking).

Starts from a pre-trained checkpoint (ours, or the release's converted with
`python -m mvlt_jax.convert from-torch`); the recognition heads start fresh:

  python main.py --config=configs/finetune_recognition.py --workdir=workdirs/recognition \
      --config.init_from=workdirs/pretrain/checkpoints

Evaluate:
  python main.py --config=configs/finetune_recognition.py --workdir=workdirs/recognition \
      --config.task=eval_recognition
"""

from configs import pretrain


def get_config():
  c = pretrain.get_config()
  c.model.heads = ('recognition',)
  c.model.num_main_classes = 0  # from the dataset (the paper: 48 main, 122 sub-categories)
  c.model.num_sub_classes = 0
  c.dataset.itm_negative_prob = 0.0  # every image with its own caption
  c.num_epochs = 30
  c.init_from = ''  # required in practice: a pre-trained checkpoint
  c.best_metric = 'sub_accuracy'  # WORKDIR/best_checkpoint: the best sub-category accuracy
  c.best_mode = 'max'
  return c
