"""Semantic-segmentation training sources as LISA uses them: ADE20K, COCO-Stuff, PASCAL-Part, PACO-LVIS.

Every item is one image (``T = 1``) and up to ``classes_per_sample`` classes present in it: the
question names the classes (:func:`referring_seg_question`, medium ``"image"``), the answer has
one ``[SEG]`` per class and ``masks`` holds each class's pixels. Training draws the classes from
``(seed, index)``; otherwise the first ones in class-id order are asked. Items are images in name
(label maps) or id (COCO-format) order. There are no benchmark splits.

Label maps (an image and a single-channel PNG of class ids; :class:`LabelMapDataset`):

* ADE20K (``ADEChallengeData2016``, LISA's ``ade20k/``): ``<root>/images/<split>/<name>.jpg`` and
  ``<root>/annotations/<split>/<name>.png`` (``training``, ``validation``). Value ``k`` in 1..150 is
  :data:`ADE20K_CLASSES` ``[k - 1]``; 0 is "other objects", never asked (LISA maps it to 255).
* COCO-Stuff (``stuffthingmaps_trainval2017``, LISA's ``cocostuff/``): ``<root>/<split>/<name>.png``
  (``train2017``, ``val2017``) over COCO 2017's ``<name>.jpg``, by default in ``<root>/../coco/<split>``
  (LISA's ``dataset/coco``). Value ``k`` in 0..181 is :data:`COCOSTUFF_CLASSES` ``[k]``; 255 is
  unlabeled. As LISA does, classes with a hyphen in their name (``wall-brick``, ``building-other``,
  ...) are never asked.

COCO-format part annotations (:class:`CocoPartsDataset`; category names ``"object"`` or
``"object:part"``; a class's mask is the union of its annotations on the image):

* PASCAL-Part as converted by VLPart (``tools/pascal_part_mat2json.py``; LISA's
  ``vlpart/pascal_part/``): ``<root>/<split>.json`` over ``<root>/VOCdevkit/VOC2010/JPEGImages/<file_name>``.
* PACO-LVIS (LISA's ``vlpart/paco/``): ``<root>/annotations/paco_lvis_v1_<split>.json`` over COCO
  2017 images ``<coco_root>/<file_name>`` (``file_name`` is ``train2017/<name>.jpg``), by default
  ``<root>/../../coco``. Annotations with an empty segmentation are left out, as PACO's own loader
  does, and so are images left with none.

Class names are read from the JSON files; the label-map formats have no names file, so their
official lists ship here. Object and part names are cleaned as LISA does (a ``_(...)`` qualifier is
dropped: ``car_(automobile)`` -> ``car``), and underscores become spaces (LISA keeps them). A part
is asked as ``"dog head"`` or ``"the head of the dog"``: in training each with probability 1/2, as
LISA does, otherwise the first. Unlike LISA, which draws annotations, so that one question can
name ``dog leg`` twice with two different masks, a class is asked at most once per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from utils.data.coco_format import load_coco, segmentation_mask
from utils.data.image_io import check_size, read_rgb, safe_id_part
from utils.data.prompts import referring_seg_answer, referring_seg_question
from utils.data.registry import register_dataset
from utils.data.schema import Sample

IGNORE = 255
"""Class-id map value of pixels that belong to no askable class."""

# fmt: off
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
# fmt: on
"""The 150 ADE20K classes, row ``Idx`` of ``objectInfo150.txt`` at index ``Idx - 1``, each by its first
name (CSAILVision/sceneparsing; as LISA's ``utils/ade20k_classes.json`` and mmsegmentation list them,
which take ``television receiver`` for row 90)."""

# fmt: off
COCOSTUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk", "toilet", "door", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator",
    "blender", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky", "skyscraper", "snow", "solid-other",
    "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood",
    "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
# fmt: on
"""The 182 COCO-Stuff classes: PNG value ``k`` is ``COCOSTUFF_CLASSES[k]``, id ``k + 1`` of the official
``labels.txt`` (nightrome/cocostuff, whose id 0 is "unlabeled"; also LISA's ``utils/cocostuff_classes.txt``)."""


_COCOSTUFF_ASKED = np.array(
    [IGNORE if "-" in name else k for k, name in enumerate(COCOSTUFF_CLASSES)]
    + [IGNORE] * (256 - len(COCOSTUFF_CLASSES)),
    dtype=np.uint8,
)
"""COCO-Stuff PNG value -> class id asked, :data:`IGNORE` for hyphenated classes and unlabeled."""


def read_label_png(path: Path, where: str) -> np.ndarray:
    """``(H, W)`` uint8 values of a class-id PNG (mode ``L`` or ``P``: the stored indices, not colours)."""
    if not path.is_file():
        raise FileNotFoundError(f"{where}: missing label map {path}")
    with Image.open(path) as png:
        if png.mode not in ("L", "P"):
            raise ValueError(f"{where}: {path} is a mode {png.mode} PNG; a class-id map is single-channel (L or P)")
        return np.array(png)


def ade20k_class_ids(label: np.ndarray, where: str) -> np.ndarray:
    """ADE20K PNG values (0 other, 1..150) -> class ids 0..149, :data:`IGNORE` for 0."""
    if label.max(initial=0) > len(ADE20K_CLASSES):
        raise ValueError(f"{where}: label value {label.max()} is outside ADE20K's 0..{len(ADE20K_CLASSES)}")
    return np.where(label == 0, IGNORE, label.astype(np.int16) - 1).astype(np.uint8)


def cocostuff_class_ids(label: np.ndarray, where: str) -> np.ndarray:
    """COCO-Stuff PNG values (0..181, 255 unlabeled) -> class ids, :data:`IGNORE` for hyphenated classes."""
    bad = (label >= len(COCOSTUFF_CLASSES)) & (label != IGNORE)
    if bad.any():
        raise ValueError(f"{where}: label values {sorted(np.unique(label[bad]).tolist())} are not COCO-Stuff classes")
    return _COCOSTUFF_ASKED[label]


def part_class_name(name: str) -> tuple[str, str | None]:
    """``(object, part)`` of a category name ``"object:part"`` (``part`` ``None`` for ``"object"``), cleaned as LISA."""
    pieces = [piece.split("_(")[0].replace("_", " ").strip() for piece in name.strip().split(":")]
    if len(pieces) > 2 or not all(pieces):
        raise ValueError(f"category name {name!r} is not 'object' or 'object:part'")
    return pieces[0], pieces[1] if len(pieces) == 2 else None


class ImageClasses(NamedTuple):
    """One image read for an item: ``(H, W, 3)`` pixels, its frame name, the class ids present in
    it (ascending) and a function giving a present class's ``(H, W)`` bool mask."""

    image: np.ndarray
    frame_name: str
    present: list[int]
    mask_of: Callable[[int], np.ndarray]


class SemanticSegDataset(Dataset):
    """What the four sources share: items, sample ids, class choice and the sample.

    Subclasses give ``keys`` (one per image, stable) and implement :meth:`read` and :meth:`class_name`.
    ``sample_id`` is ``<loader>/<split>/<key>``.
    """

    def __init__(self, loader: str, split: str, keys: list[str], train: bool, seed: int, classes_per_sample: int):
        if classes_per_sample < 1:
            raise ValueError(f"classes_per_sample must be positive, got {classes_per_sample}")
        self.loader, self.split, self.keys = loader, split, keys
        self.train, self.seed, self.classes_per_sample = train, seed, classes_per_sample
        self._ids = [f"{loader}/{split}/{safe_id_part(key)}" for key in keys]
        if len(set(self._ids)) != len(self._ids):
            raise ValueError(f"{loader} {split}: image names collide once made safe for sample ids")

    def __len__(self) -> int:
        return len(self.keys)

    def sample_ids(self) -> list[str]:
        """``<loader>/<split>/<image>`` of every item, in item order (reads no image)."""
        return list(self._ids)

    def read(self, index: int, where: str) -> ImageClasses:
        raise NotImplementedError

    def class_name(self, class_id: int, rng: np.random.Generator | None) -> str:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        where = f"{self.loader} {self.split} image {self.keys[index]}"
        rng = np.random.default_rng([self.seed, index]) if self.train else None
        read = self.read(index, where)
        if not read.present:
            raise ValueError(f"{where}: no class to ask about (every pixel is unlabeled or of a class never asked)")
        count = min(self.classes_per_sample, len(read.present))
        chosen = (
            [read.present[i] for i in rng.choice(len(read.present), size=count, replace=False)]
            if rng is not None
            else read.present[:count]
        )
        names = [self.class_name(class_id, rng) for class_id in chosen]
        return Sample(
            sample_id=self._ids[index],
            frames=read.image[None],
            frame_names=[read.frame_name],
            conversation=[
                {"role": "user", "content": referring_seg_question(names, medium="image")},
                {"role": "assistant", "content": referring_seg_answer(len(names))},
            ],
            masks=np.stack([read.mask_of(class_id) for class_id in chosen])[:, None],
            medium="image",
            meta={"image": self.keys[index], "class_ids": chosen, "classes": names},
        )


def _stems(folder: Path, suffix: str) -> list[str]:
    """Sorted names of the ``*<suffix>`` files of ``folder``; ``FileNotFoundError`` if there are none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"missing folder {folder}")
    stems = sorted(path.stem for path in folder.glob(f"*{suffix}"))
    if not stems:
        raise FileNotFoundError(f"no {suffix} files in {folder}")
    return stems


class LabelMapDataset(SemanticSegDataset):
    """Images with a class-id PNG each (ADE20K, COCO-Stuff).

    Args:
        pairs: ``(name, image path, label path)`` per image, in item order.
        class_names: class id -> name.
        class_ids: ``(PNG values, where) -> (H, W) class ids`` with :data:`IGNORE` for pixels never asked.
    """

    def __init__(
        self,
        loader: str,
        split: str,
        pairs: list[tuple[str, Path, Path]],
        class_names: tuple[str, ...],
        class_ids: Callable[[np.ndarray, str], np.ndarray],
        train: bool = False,
        seed: int = 0,
        classes_per_sample: int = 1,
    ):
        super().__init__(loader, split, [name for name, _, _ in pairs], train, seed, classes_per_sample)
        self.pairs, self.class_names, self.class_ids = pairs, class_names, class_ids

    def read(self, index: int, where: str) -> ImageClasses:
        name, image_path, label_path = self.pairs[index]
        image = read_rgb(image_path, where)
        label = read_label_png(label_path, where)
        if label.shape != image.shape[:2]:
            raise ValueError(f"{where}: label map {label_path} is {label.shape} but {image_path} is {image.shape[:2]}")
        ids = self.class_ids(label, f"{where} ({label_path})")
        present = [int(v) for v in np.unique(ids) if v != IGNORE]
        return ImageClasses(image, name, present, lambda class_id: ids == class_id)

    def class_name(self, class_id: int, rng: np.random.Generator | None) -> str:
        return self.class_names[class_id]


class CocoPartsDataset(SemanticSegDataset):
    """A COCO-format file of object and ``object:part`` categories (PASCAL-Part, PACO-LVIS).

    Args:
        annotation_path: the JSON file.
        image_dir: the folder ``file_name`` is relative to.
    """

    def __init__(
        self,
        loader: str,
        split: str,
        annotation_path: Path,
        image_dir: Path,
        train: bool = False,
        seed: int = 0,
        classes_per_sample: int = 1,
    ):
        self.coco = load_coco(annotation_path)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"missing image folder {image_dir} (for {annotation_path})")
        self.image_dir = image_dir
        try:
            self.names = {cat_id: part_class_name(cat["name"]) for cat_id, cat in self.coco.categories.items()}
        except ValueError as error:
            raise ValueError(f"{annotation_path}: {error}") from error
        self.image_annotations = {
            image_id: kept
            for image_id, annotations in sorted(self.coco.image_annotations.items())
            if (kept := [ann for ann in annotations if ann["segmentation"] != []])
        }
        self.image_ids = list(self.image_annotations)
        super().__init__(loader, split, [str(i) for i in self.image_ids], train, seed, classes_per_sample)

    def read(self, index: int, where: str) -> ImageClasses:
        info = self.coco.images[self.image_ids[index]]
        annotations = self.image_annotations[self.image_ids[index]]
        path = self.image_dir / info["file_name"]
        image = read_rgb(path, where)
        check_size(image, info["height"], info["width"], where, path)

        def mask_of(class_id: int) -> np.ndarray:
            return np.logical_or.reduce(
                [
                    segmentation_mask(
                        ann["segmentation"],
                        info["height"],
                        info["width"],
                        f"{where}: annotation {ann['id']} of {self.coco.path}",
                    )
                    for ann in annotations
                    if ann["category_id"] == class_id
                ]
            )

        present = sorted({ann["category_id"] for ann in annotations})
        return ImageClasses(image, Path(info["file_name"]).stem, present, mask_of)

    def class_name(self, class_id: int, rng: np.random.Generator | None) -> str:
        obj, part = self.names[class_id]
        if part is None:
            return obj
        if rng is not None and rng.random() < 0.5:
            return f"the {part} of the {obj}"
        return f"{obj} {part}"


# ---- registration --------------------------------------------------------------------------------


def _ade20k_paths(root: Path, split: str) -> list[Path]:
    return [root / "images" / split, root / "annotations" / split]


@register_dataset("ade20k", family="sem_seg", required_paths=_ade20k_paths)
def build_ade20k(
    root: Path, split: str, *, num_frames: int | None, train: bool, seed: int, classes_per_sample: int = 1
) -> LabelMapDataset:
    """ADE20K (``ADEChallengeData2016``) ``training``/``validation``; images are one frame (``num_frames`` unused)."""
    pairs = [
        (name, root / "images" / split / f"{name}.jpg", root / "annotations" / split / f"{name}.png")
        for name in _stems(root / "images" / split, ".jpg")
    ]
    return LabelMapDataset("ade20k", split, pairs, ADE20K_CLASSES, ade20k_class_ids, train, seed, classes_per_sample)


def _cocostuff_paths(root: Path, split: str) -> list[Path]:
    return [root / split]


@register_dataset("cocostuff", family="sem_seg", required_paths=_cocostuff_paths)
def build_cocostuff(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    classes_per_sample: int = 1,
    coco_images: str | None = None,
) -> LabelMapDataset:
    """COCO-Stuff ``train2017``/``val2017`` maps over COCO images (``coco_images``; ``<root>/../coco/<split>``)."""
    image_dir = Path(coco_images) if coco_images else root.parent / "coco" / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"missing COCO image folder {image_dir} (for {root / split})")
    pairs = [(name, image_dir / f"{name}.jpg", root / split / f"{name}.png") for name in _stems(root / split, ".png")]
    return LabelMapDataset(
        "cocostuff", split, pairs, COCOSTUFF_CLASSES, cocostuff_class_ids, train, seed, classes_per_sample
    )


def _pascal_part_paths(root: Path, split: str) -> list[Path]:
    return [root / f"{split}.json", root / "VOCdevkit" / "VOC2010" / "JPEGImages"]


@register_dataset("pascal_part", family="sem_seg", required_paths=_pascal_part_paths)
def build_pascal_part(
    root: Path, split: str, *, num_frames: int | None, train: bool, seed: int, classes_per_sample: int = 1
) -> CocoPartsDataset:
    """PASCAL-Part in VLPart's COCO format (``<root>/<split>.json``) over VOC2010 images."""
    image_dir = root / "VOCdevkit" / "VOC2010" / "JPEGImages"
    return CocoPartsDataset("pascal_part", split, root / f"{split}.json", image_dir, train, seed, classes_per_sample)


def _paco_lvis_paths(root: Path, split: str) -> list[Path]:
    return [root / "annotations" / f"paco_lvis_v1_{split}.json"]


@register_dataset("paco_lvis", family="sem_seg", required_paths=_paco_lvis_paths)
def build_paco_lvis(
    root: Path,
    split: str,
    *,
    num_frames: int | None,
    train: bool,
    seed: int,
    classes_per_sample: int = 1,
    coco_root: str | None = None,
) -> CocoPartsDataset:
    """PACO-LVIS ``<root>/annotations/paco_lvis_v1_<split>.json`` over COCO 2017 images (``coco_root``).

    ``coco_root`` holds ``train2017/``...; by default ``<root>/../../coco``, as in LISA's layout.
    """
    image_dir = Path(coco_root) if coco_root else root.parent.parent / "coco"
    annotation_path = root / "annotations" / f"paco_lvis_v1_{split}.json"
    return CocoPartsDataset("paco_lvis", split, annotation_path, image_dir, train, seed, classes_per_sample)
