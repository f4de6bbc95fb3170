"""DSR Suite's question generation pipeline on real videos, one module per step (driven by
``scripts/generate_dynamic_qa.py``): (a) :mod:`.curation`, (b) :mod:`.perception` (with :mod:`.trajectories`),
(c) and (d) :mod:`.questions`, (e) :mod:`.conversion`; :mod:`.runner` makes every step resumable and parallel."""
