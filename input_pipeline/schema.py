"""The feature names of a prepared dataset: the on-disk contract.

The dataset builders (:mod:`input_pipeline.datasets.base`) write these
features, the pipelines (:mod:`input_pipeline.pipeline`) read them:

======================  ==========================================================
``id``                  Text, unique over all splits
``product_id``          Text (the views of one product share it)
``image``               uint8 [S, S, 3] (S = ``image_size``, 256): stored raw
                        (``Tensor``, bytes encoding; the default) or as JPEG
                        (``Image``; ``image_encoding='jpeg'``)
``caption``             Text (whitespace collapsed)
``input_ids``           int32 [text_length]: ``[CLS] tokens [SEP] [PAD]...``
``category``            ClassLabel (main categories)
``subcategory``         ClassLabel (sub-categories)
``pose``                Text (empty when the source has none)
``attributes``          int32 [K], only for sources with attribute labels
                        (``synthetic_fashion``: colour, pattern): the index of
                        each value in its class list (metadata ``attributes``)
======================  ==========================================================
"""

ID = 'id'
PRODUCT_ID = 'product_id'
IMAGE = 'image'
CAPTION = 'caption'
INPUT_IDS = 'input_ids'
CATEGORY = 'category'
SUBCATEGORY = 'subcategory'
POSE = 'pose'
ATTRIBUTES = 'attributes'  # optional: int32 [K], present when the source has attributes

# The features every prepared dataset has and the pipelines need.
REQUIRED_FEATURES = (ID, PRODUCT_ID, IMAGE, INPUT_IDS, CATEGORY, SUBCATEGORY)
