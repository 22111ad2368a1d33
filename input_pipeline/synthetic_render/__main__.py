"""``python -m input_pipeline.synthetic_render``: the debug entry (see ``contact_sheets``)."""

from input_pipeline.synthetic_render.contact_sheets import main

if __name__ == '__main__':
  main()
