"""Output heads; importing this package registers every head (:data:`model.heads.base.HEADS`)."""

from model.heads import seg  # noqa: F401  (registers the segmentation head)
