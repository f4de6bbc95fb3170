"""Small synthetic image data sets in the on-disk formats of the image segmentation loaders.

Every image is one frame of the moving-shapes world (:mod:`utils.synthetic.moving_shapes`): coloured
squares, circles and triangles over a dark noisy background, with the visible pixels of each shape as
its mask, so every annotation written matches what the image shows. Each writer is deterministic
from its ``seed`` and tiny by default (a few 64 x 64 images), and writes one format with the layout
its loader reads (see :mod:`utils.data.refer`, :mod:`utils.data.reasonseg`, :mod:`utils.data.semantic_seg`):

* :func:`write_refer`: REFER ``refs(<splitBy>).p`` + ``instances.json`` + images, for RefCOCO,
  RefCOCO+, RefCOCOg (polygons) and RefCLEF (lists of RLEs, under ``saiapr_tc-12/<NN>/images/``);
* :func:`write_reasonseg`: ReasonSeg ``<name>.jpg`` + LabelMe-like ``<name>.json`` with target,
  ``ignore`` and ``flag`` polygons;
* :func:`write_ade20k`, :func:`write_cocostuff`: images and class-id PNGs (mode ``L``);
* :func:`write_pascal_part`, :func:`write_paco_lvis`: COCO-format ``object:part`` annotations.

Referring expressions name a shape by colour and shape, and look-alikes by their order from the left.
Polygons trace each mask's pixel edges, so pycocotools rasterises them back to the mask exactly; a
mask a polygon cannot hold (one with a hole) is written as an RLE, as COCO allows.
"""

from __future__ import annotations

import json
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from utils.data.refer import REFER_DATASETS
from utils.data.semantic_seg import ADE20K_CLASSES, COCOSTUFF_CLASSES, IGNORE
from utils.synthetic.moving_shapes import SHAPES, WorldConfig, encode_masks, render_video, sample_objects

JPEG_QUALITY = 95
ORDINALS = ("first", "second", "third", "fourth")

SPLITS_BY: dict[str, tuple[str, ...]] = {
    "unc": ("train", "val", "testA", "testB"),
    "umd": ("train", "val", "test"),
    "google": ("train", "val"),
    "berkeley": ("train", "val", "test"),
}
"""The splits each ``splitBy`` of REFER has (one split per image, as in UNC's and UMD's partitions)."""

ADE20K_SHAPES = {"square": "box", "circle": "ball", "triangle": "tent"}
COCOSTUFF_SHAPES = {"square": "tv", "circle": "sports ball", "triangle": "kite"}
COCOSTUFF_BACKGROUND = "wall-other"
"""The class of the upper half of COCO-Stuff backgrounds (hyphenated, so never asked); the lower half is unlabeled."""


@dataclass
class Scene:
    """One image: ``image`` ``(H, W, 3)`` uint8, visible ``masks`` ``(N, H, W)`` bool, and per object its
    ``shape``, centre row ``centre_y`` (px) and two referring expressions that single it out."""

    image: np.ndarray
    masks: np.ndarray
    shapes: list[str]
    centre_y: list[float]
    expressions: list[tuple[str, str]]


def make_scene(seed: int, stream: str, index: int, size: int = 64) -> Scene:
    """Image ``index`` of the random stream named ``stream``: a function of ``(seed, stream, index, size)``."""
    rng = np.random.default_rng([seed, zlib.crc32(stream.encode()), index])
    config = WorldConfig(height=size, width=size, num_frames=1)
    objects = sample_objects(rng, config)
    frames, masks = render_video(objects, config, rng)
    expressions = []
    for obj in objects:
        twins_x = sorted(o.x for o in objects if (o.colour, o.shape) == (obj.colour, obj.shape))
        if len(twins_x) == 1:
            expressions.append((f"the {obj.colour} {obj.shape}", f"the {obj.shape} coloured {obj.colour}"))
        else:
            order = ORDINALS[twins_x.index(obj.x)]
            expressions.append(
                (f"the {order} {obj.colour} {obj.shape} from the left", f"{obj.colour} {obj.shape}, {order} from left")
            )
    return Scene(frames[0], masks[:, 0], [o.shape for o in objects], [o.y for o in objects], expressions)


def write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons ``[[x1, y1, ...], ...]`` along the pixel edges of each outer boundary of ``mask``."""
    upsampled = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [(contour[:, 0, :] / 2).astype(float).flatten().tolist() for contour in contours if len(contour) >= 3]


def compressed_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of a non-empty ``(H, W)`` mask."""
    return encode_masks(mask[None, None])[0][0]


def coco_segmentation(mask: np.ndarray) -> list[list[float]] | dict:
    """Polygons when they rasterise back to ``mask`` exactly, else its compressed RLE."""
    polygons = mask_polygons(mask)
    if polygons:
        decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, *mask.shape))).astype(bool)
        if np.array_equal(decoded, mask):
            return polygons
    return compressed_rle(mask)


def bbox(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of a non-empty mask."""
    rows, cols = np.nonzero(mask)
    return [
        float(cols.min()),
        float(rows.min()),
        float(cols.max() - cols.min() + 1),
        float(rows.max() - rows.min() + 1),
    ]


def coco_annotation(ann_id: int, image_id: int, category_id: int, segmentation: object, mask: np.ndarray) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "area": float(mask.sum()),
        "bbox": bbox(mask),
        "iscrowd": 0,
    }


def coco_image(image_id: int, file_name: str, size: int) -> dict:
    return {"id": image_id, "file_name": file_name, "height": size, "width": size}


# ---- REFER ---------------------------------------------------------------------------------------


def refer_file_name(dataset: str, image_id: int) -> str:
    """Where an image lies under the dataset's image folder: COCO's ``COCO_train2014_<id>.jpg``, or
    ``<NN>/images/<id>.jpg`` in SAIAPR TC-12's folder layout (assumed for RefCLEF)."""
    if dataset == "refclef":
        return f"{image_id // 100:02d}/images/{image_id}.jpg"
    return f"COCO_train2014_{image_id:012d}.jpg"


def write_refer(
    root: Path,
    dataset: str = "refcoco",
    split_bys: tuple[str, ...] | None = None,
    images_per_split: int = 2,
    seed: int = 0,
    size: int = 64,
) -> list[Path]:
    """Write a REFER dataset under ``root``: ``<dataset>/instances.json``, its images, and one
    ``refs(<splitBy>).p`` per ``split_bys`` (default: LISA's), all over the same images.

    Every object of every image is a ref (same ids in every refs file) with two sentences; each
    splitBy deals the images to its splits in turn, ``images_per_split`` each. Image, ref,
    annotation and sentence ids are unique. Returns the refs files.
    """
    default_split_by, image_folder = REFER_DATASETS[dataset]
    split_bys = split_bys or (default_split_by,)
    shapes = sorted(SHAPES)
    categories = [{"id": k + 1, "name": shape, "supercategory": "shape"} for k, shape in enumerate(shapes)]
    images, annotations, refs = [], [], []
    for index in range(images_per_split * max(len(SPLITS_BY[split_by]) for split_by in split_bys)):
        scene = make_scene(seed, image_folder, index, size)  # RefCOCO, RefCOCO+ and RefCOCOg share COCO images
        image_id = 101 + index
        file_name = refer_file_name(dataset, image_id)
        write_jpeg(root / "images" / image_folder / file_name, scene.image)
        images.append(coco_image(image_id, file_name, size))
        for mask, shape, texts in zip(scene.masks, scene.shapes, scene.expressions, strict=True):
            ann_id, ref_id = 1001 + len(annotations), 1 + len(refs)
            segmentation = [compressed_rle(mask)] if dataset == "refclef" else coco_segmentation(mask)
            annotations.append(coco_annotation(ann_id, image_id, shapes.index(shape) + 1, segmentation, mask))
            sentences = [
                {"tokens": text.split(), "raw": text, "sent_id": 10 * ref_id + k, "sent": text}
                for k, text in enumerate(texts)
            ]
            refs.append(
                {
                    "sent_ids": [s["sent_id"] for s in sentences],
                    "file_name": f"{Path(file_name).stem}_{ann_id}.jpg",
                    "ann_id": ann_id,
                    "ref_id": ref_id,
                    "image_id": image_id,
                    "sentences": sentences,
                    "category_id": shapes.index(shape) + 1,
                }
            )
    write_json(
        root / dataset / "instances.json", {"images": images, "annotations": annotations, "categories": categories}
    )
    paths = []
    for split_by in split_bys:
        splits = SPLITS_BY[split_by]
        split_refs = [
            {**ref, "split": splits[(ref["image_id"] - 101) // images_per_split]}
            for ref in refs
            if ref["image_id"] - 101 < images_per_split * len(splits)
        ]
        paths.append(root / dataset / f"refs({split_by}).p")
        paths[-1].write_bytes(pickle.dumps(split_refs, protocol=2))
    return paths


# ---- ReasonSeg -----------------------------------------------------------------------------------


def labelme_shapes(label: str, mask: np.ndarray) -> list[dict]:
    """LabelMe polygon shapes ``{"label", "points": [[x, y], ...], ...}`` outlining ``mask``."""
    return [
        {"label": label, "points": np.reshape(polygon, (-1, 2)).tolist(), "group_id": None, "shape_type": "polygon"}
        for polygon in mask_polygons(mask)
    ]


def write_reasonseg(root: Path, split: str = "val", num_images: int = 3, seed: int = 0, size: int = 64) -> Path:
    """Write ReasonSeg ``<root>/ReasonSeg/<split>/``: per image a target object, another object as
    ``ignore`` and a ``flag`` shape; every second image has sentence queries. Returns the split folder."""
    split_dir = root / "ReasonSeg" / split
    for index in range(num_images):
        scene = make_scene(seed, f"reasonseg/{split}", index, size)
        rng = np.random.default_rng([seed, zlib.crc32(f"reasonseg/{split}/choice".encode()), index])
        target, ignore = (int(i) for i in rng.permutation(len(scene.masks))[:2])
        flag = np.zeros((size, size), dtype=bool)
        flag[: size // 4, : size // 4] = True
        shapes = [
            *labelme_shapes("target", scene.masks[target]),
            *labelme_shapes("ignore", scene.masks[ignore]),
            *labelme_shapes("flag", flag),
        ]
        is_sentence = index % 2 == 1
        phrase = scene.expressions[target][0]
        texts = (
            [f"Which object in this picture is {phrase}?", f"Something here is {phrase}; which one?"]
            if is_sentence
            else list(scene.expressions[target])
        )
        name = f"synthetic_{index:04d}"
        write_jpeg(split_dir / f"{name}.jpg", scene.image)
        annotation = {
            "version": "4.5.6",
            "flags": {},
            "shapes": shapes,
            "imagePath": f"{name}.jpg",
            "imageData": None,
            "imageHeight": size,
            "imageWidth": size,
            "text": texts,
            "is_sentence": is_sentence,
        }
        write_json(split_dir / f"{name}.json", annotation)
    return split_dir


# ---- label maps ----------------------------------------------------------------------------------


def _write_label_maps(
    images: list[Path], labels: list[Path], stream: str, seed: int, values: dict[str, int], background: np.ndarray
) -> None:
    """Images and mode-L class-id PNGs: each shape's visible pixels get ``values[shape]``, the rest
    ``background`` (an ``(H, W)`` uint8 map; its size is the images')."""
    for index, (image_path, label_path) in enumerate(zip(images, labels, strict=True)):
        scene = make_scene(seed, stream, index, background.shape[0])
        label = background.copy()
        for mask, shape in zip(scene.masks, scene.shapes, strict=True):
            label[mask] = values[shape]
        write_jpeg(image_path, scene.image)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label, mode="L").save(label_path)


def write_ade20k(root: Path, split: str = "training", num_images: int = 3, seed: int = 0, size: int = 64) -> Path:
    """Write ADE20K ``<root>/images/<split>/*.jpg`` + ``<root>/annotations/<split>/*.png``; returns ``root``."""
    prefix = "ADE_train" if split == "training" else "ADE_val"
    names = [f"{prefix}_{index + 1:08d}" for index in range(num_images)]
    values = {shape: ADE20K_CLASSES.index(name) + 1 for shape, name in ADE20K_SHAPES.items()}
    _write_label_maps(
        [root / "images" / split / f"{name}.jpg" for name in names],
        [root / "annotations" / split / f"{name}.png" for name in names],
        f"ade20k/{split}",
        seed,
        values,
        background=np.zeros((size, size), dtype=np.uint8),
    )
    return root


def write_cocostuff(
    root: Path,
    split: str = "train2017",
    num_images: int = 3,
    seed: int = 0,
    size: int = 64,
    coco_images: Path | None = None,
) -> Path:
    """Write COCO-Stuff ``<root>/<split>/*.png`` over COCO images in ``coco_images`` (default
    ``<root>/../coco/<split>``); backgrounds are half ``wall-other``, half unlabeled. Returns ``root``."""
    image_dir = coco_images or root.parent / "coco" / split
    names = [f"{1 + index:012d}" for index in range(num_images)]
    values = {shape: COCOSTUFF_CLASSES.index(name) for shape, name in COCOSTUFF_SHAPES.items()}
    background = np.full((size, size), IGNORE, dtype=np.uint8)
    background[: size // 2] = COCOSTUFF_CLASSES.index(COCOSTUFF_BACKGROUND)
    _write_label_maps(
        [image_dir / f"{name}.jpg" for name in names],
        [root / split / f"{name}.png" for name in names],
        f"cocostuff/{split}",
        seed,
        values,
        background,
    )
    return root


# ---- COCO-format part annotations ----------------------------------------------------------------


def part_masks(scene: Scene, index: int) -> dict[str, np.ndarray]:
    """The object's visible pixels above (``top``) and below (``bottom``) its centre row; empty parts left out."""
    rows = np.arange(scene.masks.shape[1])[:, None] + 0.5
    above = rows < scene.centre_y[index]
    parts = {"top": scene.masks[index] & above, "bottom": scene.masks[index] & ~above}
    return {name: mask for name, mask in parts.items() if mask.any()}


def category_ids(names: list[str]) -> dict[str, int]:
    """Category name -> id, numbered from 1 in order."""
    return {name: k + 1 for k, name in enumerate(names)}


def part_categories(objects: list[str], parts: tuple[str, ...]) -> list[str]:
    """``object:part`` names, object by object."""
    return [f"{obj}:{part}" for obj in objects for part in parts]


def write_pascal_part(root: Path, split: str = "train", num_images: int = 3, seed: int = 0, size: int = 64) -> Path:
    """Write PASCAL-Part as VLPart converts it: ``<root>/<split>.json`` (``object:part`` categories,
    compressed-RLE parts, annotation ids from 0) over ``<root>/VOCdevkit/VOC2010/JPEGImages/``. Returns the JSON."""
    ids = category_ids(part_categories([f"{shape} shape" for shape in sorted(SHAPES)], ("top half", "bottom half")))
    images, annotations = [], []
    for index in range(num_images):
        scene = make_scene(seed, f"pascal_part/{split}", index, size)
        name = f"2008_{index + 1:06d}"
        image_id = int(name.replace("_", ""))
        write_jpeg(root / "VOCdevkit" / "VOC2010" / "JPEGImages" / f"{name}.jpg", scene.image)
        images.append(coco_image(image_id, f"{name}.jpg", size))
        for k, shape in enumerate(scene.shapes):
            for part, mask in part_masks(scene, k).items():
                category = ids[f"{shape} shape:{part} half"]
                annotations.append(coco_annotation(len(annotations), image_id, category, compressed_rle(mask), mask))
    categories = [{"id": cid, "name": name} for name, cid in ids.items()]
    path = root / f"{split}.json"
    write_json(path, {"categories": categories, "images": images, "annotations": annotations})
    return path


def write_paco_lvis(
    root: Path, split: str = "train", num_images: int = 3, seed: int = 0, size: int = 64, coco_root: Path | None = None
) -> Path:
    """Write PACO-LVIS ``<root>/annotations/paco_lvis_v1_<split>.json`` over COCO images in ``coco_root``
    (default ``<root>/../../coco``, as ``train2017/<id>.jpg``). Objects are LVIS-style ``<shape>_(shape)``
    categories, parts ``<shape>_(shape):<top|bottom>_half``; each image also has one annotation with an
    empty segmentation, as PACO's files can. Returns the JSON."""
    coco_root = coco_root or root.parent.parent / "coco"
    objects = [f"{shape}_(shape)" for shape in sorted(SHAPES)]
    ids = category_ids(objects + part_categories(objects, ("top_half", "bottom_half")))
    images, annotations = [], []
    for index in range(num_images):
        scene = make_scene(seed, f"paco_lvis/{split}", index, size)
        image_id = 1 + index
        file_name = f"train2017/{image_id:012d}.jpg"
        write_jpeg(coco_root / file_name, scene.image)
        images.append(
            {**coco_image(image_id, file_name, size), "neg_category_ids": [], "not_exhaustive_category_ids": []}
        )
        for k, shape in enumerate(scene.shapes):
            obj = f"{shape}_(shape)"
            annotations.append(
                coco_annotation(
                    1 + len(annotations), image_id, ids[obj], coco_segmentation(scene.masks[k]), scene.masks[k]
                )
            )
            for part, mask in part_masks(scene, k).items():
                category = ids[f"{obj}:{part}_half"]
                annotations.append(
                    coco_annotation(1 + len(annotations), image_id, category, coco_segmentation(mask), mask)
                )
        annotations.append(coco_annotation(1 + len(annotations), image_id, ids[objects[0]], [], scene.masks[0]))
    categories = [
        {"id": cid, "name": name, "supercategory": "PART" if ":" in name else "OBJECT"} for name, cid in ids.items()
    ]
    path = root / "annotations" / f"paco_lvis_v1_{split}.json"
    write_json(path, {"images": images, "annotations": annotations, "categories": categories})
    return path
