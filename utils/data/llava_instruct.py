"""LLaVA-Instruct-150K (LLaVA's GPT-4-generated visual instruction data), as released.

On disk, in LISA's / RGA3's ``dataset/`` layout (RGA3 ``utils/vqa_dataset.py``: ``llava_dataset/<name>.json``
with images in ``coco/train2017``), ``<root>`` is the ``llava_dataset`` folder:

* ``llava_instruct_150k.json`` (huggingface.co/datasets/liuhaotian/LLaVA-Instruct-150K; LLaVA ``docs/Data.md``):
  a list of ``{"id", "image", "conversations": [{"from": "human" | "gpt", "value"}]}`` with ``image`` a
  COCO train2017 file name (``000000033471.jpg``) and ``<image>`` in the first human turn. One item per
  generated conversation (multi-turn conversations, detailed descriptions, complex reasoning), so an
  image can appear in several items;
* the COCO train2017 images, by default ``<root>/../coco/train2017``; option ``image_dir`` (relative to
  ``<root>``, or absolute).

Conversion (:mod:`utils.data.llava_conversation`): every turn kept (the collator trains on every
assistant turn), ``<image>`` removed. A missing or corrupt image, or a malformed conversation, raises
an error naming the item and file.

Items: file order; ``sample_id`` ``llava_instruct/train/<position in the file>``. ``meta``: ``answer``
(the last assistant turn), ``category`` (``"llava_instruct"``), ``id``, ``image``.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from utils.data.llava_conversation import chat_turns, final_answer, media_path, read_image, read_items
from utils.data.registry import register_dataset
from utils.data.schema import Sample

SPLIT = "train"
ANNOTATION_FILE = "llava_instruct_150k.json"


class LLaVAInstructDataset(Dataset):
    """LLaVA-Instruct-150K: image question answering, single images (``T = 1``), multi-turn.

    Args:
        root: the folder holding ``llava_instruct_150k.json``.
        image_dir: the COCO train2017 folder, relative to ``root`` or absolute.
    """

    def __init__(self, root: str | Path, image_dir: str = "../coco/train2017"):
        self.root = Path(root)
        self.path = self.root / ANNOTATION_FILE
        self.image_dir = self.root / image_dir
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"llava_instruct: missing image folder {self.image_dir} (option image_dir)")
        self.items = read_items(self.path)

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``llava_instruct/train/<position in the file>``."""
        return [f"llava_instruct/{SPLIT}/{position}" for position in range(len(self.items))]

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        sample_id = f"llava_instruct/{SPLIT}/{index}"
        where = f"{sample_id} (id {item.get('id')!r} in {self.path})"
        image_path = media_path(self.image_dir, item.get("image"), where)
        conversation = chat_turns(item.get("conversations"), where)
        image = read_image(image_path, where)
        return Sample(
            sample_id,
            image[None],
            [image_path.stem],
            conversation,
            medium="image",
            meta={
                "answer": final_answer(conversation),
                "category": "llava_instruct",
                "id": item.get("id"),
                "image": item["image"],
            },
        )


def _llava_instruct_paths(root: Path, split: str) -> list[Path]:
    return [root / ANNOTATION_FILE]


@register_dataset("llava_instruct", family="vqa", required_paths=_llava_instruct_paths)
def build_llava_instruct(
    root: Path, split: str, *, num_frames: int | None, train: bool, seed: int, image_dir: str = "../coco/train2017"
) -> LLaVAInstructDataset:
    """LLaVA-Instruct-150K as released (``root`` = the folder of ``llava_instruct_150k.json``); one split, ``train``.

    Images are one frame (``num_frames`` is unused). Option ``image_dir``: the COCO train2017 folder.
    """
    if split != SPLIT:
        raise ValueError(f"llava_instruct has one split, {SPLIT!r}; got {split!r}")
    return LLaVAInstructDataset(root, image_dir)
