"""Geometry models that turn frames into 3-D structure (Pi3) and their tokens on Qwen's merged grid."""

from model.geometry.pi3 import Pi3Config, Pi3Model, Pi3Output, load_pi3_state_dict, pi3_state_dict
from model.geometry.pi3_encoder import (
    encode_frames,
    encoder_state_dict_from_pi3,
    encoder_state_dict_to_pi3,
    group_like_qwen,
    load_pi3_encoder,
    pi3_encoder_config,
    resize_to_patch_multiple,
)

__all__ = [
    "Pi3Config",
    "Pi3Model",
    "Pi3Output",
    "encode_frames",
    "encoder_state_dict_from_pi3",
    "encoder_state_dict_to_pi3",
    "group_like_qwen",
    "load_pi3_encoder",
    "load_pi3_state_dict",
    "pi3_encoder_config",
    "pi3_state_dict",
    "resize_to_patch_multiple",
]
