"""Video input: sources and metadata, frame sampling, decoding backends, and model-ready inputs.

``read_clip(path, FrameSampling(...))`` (:mod:`utils.video.clip`) is the one call every reader uses;
``model_inputs(clip, ...)`` (:mod:`utils.video.model_inputs`) turns its frames into Qwen2.5-VL's and
SAM2's inputs.
"""
