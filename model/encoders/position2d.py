"""2D position encoding of the visual tokens: where in its frame each merged token looks.

Qwen2.5-VL's visual tokens carry their place in the frame only through M-RoPE, a relative signal inside
attention; a token's content does not say where it is. This ``add`` encoder adds to every visual token
(images and videos alike) a parameter-free sinusoidal code of the normalised centre of its merged-token
cell: on a ``(slots, h, w)`` merged grid, the token in row ``i`` and column ``j`` of a slot sits at
``x = (j + 0.5) / w``, ``y = (i + 0.5) / h`` (0 = left / top edge, 1 = right / bottom edge), whatever the
frame's size, and every slot of a video gets the same codes. The coordinates are multiplied by
``resolution`` (default 100: HOI-QA's box grid, so one unit is one grid step) before
:func:`sinusoidal_code_2d` turns them into a code of the LLM's width, added (times ``scale``) to the token.

The encoder has no parameters (its module group ``encoder_position2d`` is empty). Text-only samples are
left untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.input_assembly import AssemblyContext, InputEncoder, register_encoder
from model.visual_tokens import VisualTokens, visual_layouts

AXES = 2


def sinusoidal_code_2d(coordinates: torch.Tensor, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """``(N, 2)`` ``(x, y)`` coordinates -> ``(N, width)`` float32 code.

    Each axis gets ``F = width // 4`` frequencies ``temperature ** (-k / F)``, ``k = 0 .. F-1``; its block is
    ``[sin(v * f_0) .. sin(v * f_{F-1}), cos(v * f_0) .. cos(v * f_{F-1})]``, x's block before y's. The last
    ``width - 4F`` (0 to 3) entries are zero.
    """
    per_axis = width // (2 * AXES)
    if per_axis == 0:
        raise ValueError(f"a 2D sinusoidal code needs a width of at least {2 * AXES}, got {width}")
    if coordinates.ndim != 2 or coordinates.shape[1] != AXES:
        raise ValueError(f"coordinates must be (N, 2) x, y, got shape {tuple(coordinates.shape)}")
    frequencies = temperature ** (-torch.arange(per_axis, device=coordinates.device, dtype=torch.float32) / per_axis)
    angles = coordinates.to(torch.float32)[..., None] * frequencies  # (N, 2, F)
    code = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (N, 2 * 2F)
    return F.pad(code, (0, width - code.shape[1]))


def cell_centres(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """``(height * width, 2)`` float32 normalised ``(x, y)`` centres of a ``height x width`` grid's cells, row-major."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


@register_encoder("position2d")
class Position2DEncoder(InputEncoder):
    """Adds the sinusoidal code of each visual token's normalised place in its frame to the token.

    Args:
        llm_hidden_size: D, the LLM's width (the code's width).
        visual_tokens: where the visual tokens are (the builder passes the backbone's).
        resolution: units per frame side the normalised coordinates are multiplied by.
        scale: factor on the code before it is added.
        temperature: the code's longest wavelength, in units, is about ``2 * pi * temperature``.
    """

    kind = "add"

    def __init__(
        self,
        llm_hidden_size: int,
        visual_tokens: VisualTokens,
        resolution: float = 100.0,
        scale: float = 1.0,
        temperature: float = 10000.0,
    ):
        super().__init__()
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        if llm_hidden_size < 2 * AXES:
            raise ValueError(f"a 2D sinusoidal code needs a width of at least {2 * AXES}, got {llm_hidden_size}")
        self.width = llm_hidden_size
        self.visual_tokens = visual_tokens
        self.resolution, self.scale, self.temperature = resolution, scale, temperature

    @classmethod
    def from_options(cls, options: dict, llm_hidden_size: int, backbone_config=None) -> Position2DEncoder:
        if backbone_config is None:
            raise ValueError("the position2d encoder needs the backbone config (its visual token ids and grid)")
        return cls(llm_hidden_size, VisualTokens.from_backbone_config(backbone_config), **options)

    def grid_codes(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """``(height * width, D)`` float32: ``scale`` x the code of each cell of one slot's merged grid, row-major."""
        coordinates = cell_centres(height, width, device) * self.resolution
        return sinusoidal_code_2d(coordinates, self.width, self.temperature) * self.scale

    def forward(self, embeds: torch.Tensor, context: AssemblyContext) -> torch.Tensor:
        grids = {"video_grid_thw": context.video_grid_thw, "image_grid_thw": context.image_grid_thw}
        layouts = visual_layouts(context.input_ids, grids, self.visual_tokens)
        rows = []
        for row, layout in enumerate(layouts):
            if layout is None:
                rows.append(embeds[row])
                continue
            slots, height, width = layout.grid
            codes = self.grid_codes(height, width, embeds.device).repeat(slots, 1)  # (slots * h * w, D)
            rows.append(embeds[row].index_add(0, layout.positions, codes.to(embeds.dtype)))
        return torch.stack(rows)
