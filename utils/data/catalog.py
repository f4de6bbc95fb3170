"""Every dataset loader, registered: importing this module fills :data:`~utils.data.registry.LOADERS`.

Each module below registers its builders with :func:`~utils.data.registry.register_dataset` when
imported; add a new dataset module here.
"""

from utils.data import (  # noqa: F401  (imported for their registrations)
    dsr_bench,
    fourd_bench,
    hoi_qa,
    llava_instruct,
    llava_video,
    mevis,
    moving_shapes_stream,
    osprey,
    reasonseg,
    reasonvos,
    ref_youtube_vos,
    refer,
    scan2cap,
    scanqa,
    scanrefer,
    semantic_seg,
    videoinfer,
    videorefer,
    vip_llava,
    vlm4d,
)
from utils.data.registry import EVALUATED_SPLITS, LOADERS, registered_names

__all__ = ["EVALUATED_SPLITS", "LOADERS", "registered_names"]
