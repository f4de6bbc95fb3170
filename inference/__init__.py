"""Everyday inference on a user's own media: the one code path of ``python -m scripts.infer`` and ``app.py``.

:mod:`inference.media` reads a video file, frame folder or image within limits; :mod:`inference.region_prompt`
turns what a user draws or gives in a file into a mask; :mod:`inference.pipeline` asks the model (through
the benchmarks' predictors, so prompting, frame sampling and resizing are the evaluation's own); and
:mod:`inference.outputs` writes masks, overlay videos and archives.
"""
