"""Output heads; importing this package registers every head (:data:`model.heads.base.HEADS`)."""

import model.heads.proposal_grounding  # noqa: F401  (registers the proposal grounding head)
from model.heads import seg  # noqa: F401  (registers the segmentation head)
