"""Input encoders of the input-assembly seam; importing this package registers each of them."""

from model.encoders import geometry, position2d, position3d, proposal_tokens, region  # noqa: F401  (imported for their registration)
