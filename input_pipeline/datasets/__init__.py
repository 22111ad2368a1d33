"""The dataset builders: one module per dataset beside their shared base.

* ``base``: what the builders share (options, records, the TFDS builder, the
  text checks; the features are named in :mod:`input_pipeline.schema`);
* ``fashion_gen``: Fashion-Gen from its official h5 files;
* ``catalog``: a user's own product catalog (JSONL or CSV + images);
* ``synthetic_fashion``: the embedded synthetic catalog
  (:mod:`input_pipeline.synthetic_render`).

``python -m input_pipeline.prepare NAME`` prepares them.
"""
