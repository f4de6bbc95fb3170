"""Input encoders of the input-assembly seam; importing this package registers each of them."""

from model.encoders import region  # noqa: F401  (imported for its registration)
