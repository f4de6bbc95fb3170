"""3D position encoding of the video tokens (Video-3D LLM style): where in the room each token looks.

For a sample with posed RGB-D (``batch["scenes"]``, :class:`utils.data.schema.SceneGeometry`) this
``add`` encoder adds to every video token a code of the 3D point it sees:

1. :func:`~utils.scene3d.token_positions.token_world_positions` (the collator's ``token_positions`` when it
   gives them): every depth pixel is back-projected to the (aligned) world
   (:func:`utils.scene3d.geometry.depth_to_points`; invalid depth never contributes) and the points are
   averaged onto Qwen2.5-VL's merged-token grid: one token covers ``temporal_patch_size`` consecutive
   frames and one ``28 x 28`` px cell of the resized frame, mapped onto the depth image by normalised
   image coordinates (the depth image may have any resolution; it must show the same view as the
   colour frame). A token none of whose pixels has valid depth is invalid.
2. the positions are discretised into voxels of ``voxel_size`` metres, counted from an origin: by
   default the sample's own minimum corner (the smallest coordinate of its valid tokens per axis, so
   indices start at 0 as Video-3D LLM's do; they then depend on which frames the LLM sees), or a fixed
   ``origin`` in the aligned world (the same point always gets the same code);
3. :func:`sinusoidal_position_code` turns the integer voxel coordinates into a parameter-free
   sinusoidal code of the LLM's width, which is added (times ``scale``) to the valid tokens.

The encoder has no parameters (its module group ``encoder_position3d`` is empty). Samples without a
scene, without video tokens or with images leave their embeddings untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from model.input_assembly import AssemblyContext, InputEncoder, register_encoder
from model.visual_tokens import VisualTokens, visual_layouts
from utils.data.schema import SceneGeometry
from utils.scene3d.token_positions import AXES, token_world_positions


def sinusoidal_position_code(voxels: torch.Tensor, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """``(N, 3)`` integer voxel coordinates -> ``(N, width)`` float32 code.

    Each axis gets ``F = width // 6`` frequencies ``temperature ** (-k / F)``, ``k = 0 .. F-1``; its block is
    ``[sin(v * f_0) .. sin(v * f_{F-1}), cos(v * f_0) .. cos(v * f_{F-1})]`` and the blocks of x, y, z follow
    each other. The last ``width - 6F`` (0 to 5) entries are zero.
    """
    per_axis = width // (2 * AXES)
    if per_axis == 0:
        raise ValueError(f"a 3D sinusoidal code needs a width of at least {2 * AXES}, got {width}")
    frequencies = temperature ** (-torch.arange(per_axis, device=voxels.device, dtype=torch.float32) / per_axis)
    angles = voxels.to(torch.float32)[..., None] * frequencies  # (N, 3, F)
    code = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (N, 3 * 2F)
    return F.pad(code, (0, width - code.shape[1]))


@register_encoder("position3d")
class Position3DEncoder(InputEncoder):
    """Adds the sinusoidal code of each video token's voxel in the scene to the token.

    Args:
        llm_hidden_size: D, the LLM's width (the code's width).
        visual_tokens: where the visual tokens are (the builder passes the backbone's).
        voxel_size: edge of a voxel in metres.
        scale: factor on the code before it is added.
        origin: ``(3,)`` fixed origin of the voxel grid in the aligned world; ``None``: each sample's minimum
            corner of its valid token positions.
        temperature: the code's longest wavelength, in voxels, is about ``2 * pi * temperature``.
    """

    kind = "add"

    def __init__(
        self,
        llm_hidden_size: int,
        visual_tokens: VisualTokens,
        voxel_size: float = 0.1,
        scale: float = 1.0,
        origin: Sequence[float] | None = None,
        temperature: float = 10000.0,
    ):
        super().__init__()
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        if origin is not None and len(origin) != AXES:
            raise ValueError(f"origin must be (x, y, z), got {origin}")
        if llm_hidden_size < 2 * AXES:
            raise ValueError(f"a 3D sinusoidal code needs a width of at least {2 * AXES}, got {llm_hidden_size}")
        self.width = llm_hidden_size
        self.visual_tokens = visual_tokens
        self.voxel_size, self.scale, self.temperature = voxel_size, scale, temperature
        self.origin = None if origin is None else tuple(float(v) for v in origin)

    @classmethod
    def from_options(cls, options: dict, llm_hidden_size: int, backbone_config=None) -> Position3DEncoder:
        if backbone_config is None:
            raise ValueError("the position3d encoder needs the backbone config (its visual token ids and grid)")
        return cls(llm_hidden_size, VisualTokens.from_backbone_config(backbone_config), **options)

    def voxels(self, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` positions (NaN where not ``valid``) -> ``(N, 3)`` integer voxel coordinates (0 where invalid)."""
        positions = torch.where(valid[:, None], positions, torch.zeros_like(positions))
        if self.origin is None:
            origin = positions[valid].amin(0)
        else:
            origin = torch.tensor(self.origin, dtype=positions.dtype, device=positions.device)
        return torch.where(valid[:, None], torch.floor((positions - origin) / self.voxel_size), 0).long()

    def token_positions(
        self, scene: SceneGeometry, grid_thw: tuple[int, int, int], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions (N, 3), valid (N,))`` of the ``N`` video tokens on ``grid_thw``."""
        positions, valid = token_world_positions(
            scene, grid_thw, self.visual_tokens.spatial_merge_size, self.visual_tokens.temporal_patch_size
        )
        return torch.from_numpy(positions).to(device), torch.from_numpy(valid).to(device)

    def token_codes(self, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` float32: ``scale`` x the code of each of the ``N`` video tokens at ``positions`` (zeros where
        not ``valid``)."""
        if not bool(valid.any()):
            return positions.new_zeros(len(valid), self.width)
        code = sinusoidal_position_code(self.voxels(positions, valid), self.width, self.temperature)
        return code * valid[:, None] * self.scale

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        scenes = context.batch.get("scenes")
        if scenes is None:
            return embeds
        if len(scenes) != embeds.shape[0]:
            raise ValueError(f"{len(scenes)} scenes for a batch of {embeds.shape[0]} samples")
        grids = {"video_grid_thw": context.video_grid_thw, "image_grid_thw": context.image_grid_thw}
        layouts = visual_layouts(context.input_ids, grids, self.visual_tokens)
        merge = self.visual_tokens.spatial_merge_size
        collated = context.batch.get("token_positions")
        rows = []
        for row, (scene, layout) in enumerate(zip(scenes, layouts, strict=True)):
            if scene is None or not bool(context.video_mask[row].any()):  # no scene, or no video to place
                rows.append(embeds[row])
                continue
            if collated is not None and collated[row] is not None:  # the collator computed them (data workers)
                positions, valid = (value.to(embeds.device) for value in collated[row])
            else:
                slots, height, width = layout.grid
                grid = (slots, height * merge, width * merge)
                try:
                    positions, valid = self.token_positions(scene, grid, embeds.device)
                except ValueError as error:
                    raise ValueError(f"batch row {row}: {error}") from error
            codes = self.token_codes(positions, valid)  # (N, D)
            rows.append(embeds[row].index_add(0, layout.positions, codes.to(embeds.dtype)))
        return torch.stack(rows)
