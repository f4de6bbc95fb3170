"""VLM4D's run scripts and :mod:`evaluation.vlm4d.official_table` (its official table from its own judged files)."""
