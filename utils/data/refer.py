"""REFER-format referring segmentation: RefCOCO, RefCOCO+, RefCOCOg and RefCLEF, read as LISA reads them.

On disk (``<root>`` is LISA's ``refer_seg`` folder, the layout of ``lichengunc/refer``'s ``data/``)::

    <root>/<dataset>/refs(<splitBy>).p   pickle: a list of refs {"ref_id", "ann_id", "image_id",
                                         "category_id", "split", "sentences": [{"sent", "sent_id",
                                         "tokens", "raw"}], ...}
    <root>/<dataset>/instances.json      COCO: "images" [{"id", "file_name", "height", "width"}],
                                         "annotations" [{"id", "image_id", "category_id",
                                         "segmentation"}], "categories" [{"id", "name"}]
    <root>/images/mscoco/images/train2014/<file_name>   RefCOCO, RefCOCO+, RefCOCOg
    <root>/images/saiapr_tc-12/<file_name>              RefCLEF

A segmentation is COCO polygons (RefCOCO*), a list of RLEs (RefCLEF, which REFER decodes and sums)
or one RLE; a ref's mask is the union of its annotation's parts (:mod:`utils.data.coco_format`).
Polygons partly outside the image are clipped to it, as pycocotools (and so LISA) rasterise them; a
mask with no pixel is an error.
Images are read as stored (no EXIF turn), the raster that ``height``/``width`` describe; an image of
another size than its annotation is an error.

The refs pickle is read by an unpickler that builds only lists, dicts, strings and numbers and
refuses every class or function a pickle names, so a tampered file cannot run code.

Items: for evaluation one per (ref, sentence), in (image, ref, sentence) order, as LISA's
``ValDataset`` scores every sentence of every ref; for training one per ref, with a sentence drawn
from ``(seed, index)`` (LISA also draws whole images, then sentences of their refs; here
``expressions_per_sample`` adds other refs of the same image). Splits follow REFER's
``getRefIds``: ``testA`` also takes refs of ``testAB``/``testAC``, ``test`` every ``test*`` split.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.coco_format import load_coco, segmentation_mask
from utils.data.image_io import check_size, read_rgb
from utils.data.prompts import referring_seg_answer, referring_seg_question
from utils.data.registry import register_dataset
from utils.data.schema import Sample

# ---- the refs pickle -----------------------------------------------------------------------------


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds only what pickle makes without naming a global: containers, strings, numbers, None."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it names {module}.{name}; only plain lists, dicts, strings and numbers are read")


REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


def load_refs(path: Path) -> list[dict]:
    """The refs of a REFER ``refs(<splitBy>).p``, read without running any code the file may name.

    Raises ``ValueError`` naming the file if it holds anything but plain data or a ref lacks
    :data:`REF_KEYS` or sentences with ``sent`` and ``sent_id``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"missing refs file {path}")
    try:
        with open(path, "rb") as file:
            refs = _PlainDataUnpickler(file, encoding="utf-8").load()
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a plain-data refs pickle: {error}") from error
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    for ref in refs:
        if not isinstance(ref, dict) or any(key not in ref for key in REF_KEYS):
            raise ValueError(f"{path}: a ref lacks some of {list(REF_KEYS)}: {str(ref)[:200]}")
        sentences = ref["sentences"]
        if not isinstance(sentences, list) or not sentences:
            raise ValueError(f"{path}: ref {ref['ref_id']} has no sentences")
        for sentence in sentences:
            if not isinstance(sentence, dict) or not isinstance(sentence.get("sent"), str) or "sent_id" not in sentence:
                raise ValueError(f"{path}: ref {ref['ref_id']} has a sentence without 'sent'/'sent_id': {sentence!r}")
    return refs


# ---- the dataset ---------------------------------------------------------------------------------

REFER_DATASETS: dict[str, tuple[str, str]] = {
    "refcoco": ("unc", "mscoco/images/train2014"),
    "refcoco+": ("unc", "mscoco/images/train2014"),
    "refcocog": ("umd", "mscoco/images/train2014"),
    "refclef": ("unc", "saiapr_tc-12"),
}
"""Dataset -> (default splitBy as LISA uses it, image folder under ``<root>/images``)."""

REFER_SPLITS = ("train", "val", "test", "testA", "testB", "testC", "testAB", "testBC", "testAC")
"""The split names REFER's ``getRefIds`` understands."""


def in_split(ref_split: str, split: str) -> bool:
    """Whether a ref of split ``ref_split`` belongs to ``split``, by REFER's ``getRefIds`` rules."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def dataset_slug(dataset: str) -> str:
    """The dataset's name as the first part of sample ids (``refcoco+`` -> ``refcoco_plus``)."""
    return dataset.replace("+", "_plus")


class ReferDataset(Dataset):
    """One split of a REFER dataset; every sample is one image (``T = 1``).

    Args:
        root: the folder holding ``<dataset>/`` and ``images/``.
        dataset: a key of :data:`REFER_DATASETS`.
        split: a REFER split (:data:`REFER_SPLITS`) that has refs.
        split_by: the refs file's ``splitBy`` (``unc``, ``umd``, ``google``, ``berkeley``);
            ``None`` = LISA's choice (:data:`REFER_DATASETS`).
        train: items are refs with a sentence drawn per item; otherwise (ref, sentence) pairs.
        seed: with ``train``, item ``i`` draws the same sentences and extra refs for a seed.
        expressions_per_sample: (training) segment this many refs of the item's image in one
            sample, the item's own first; capped at the image's refs in the split.
    """

    def __init__(
        self,
        root: str | Path,
        dataset: str,
        split: str,
        split_by: str | None = None,
        train: bool = False,
        seed: int = 0,
        expressions_per_sample: int = 1,
    ):
        if dataset not in REFER_DATASETS:
            raise ValueError(f"unknown REFER dataset {dataset!r}; known: {sorted(REFER_DATASETS)}")
        if split not in REFER_SPLITS:
            raise ValueError(f"unknown REFER split {split!r}; REFER splits: {', '.join(REFER_SPLITS)}")
        if expressions_per_sample < 1:
            raise ValueError(f"expressions_per_sample must be positive, got {expressions_per_sample}")
        default_split_by, image_folder = REFER_DATASETS[dataset]
        self.root, self.dataset, self.split = Path(root), dataset, split
        self.split_by = split_by or default_split_by
        self.train, self.seed = train, seed
        self.expressions_per_sample = expressions_per_sample if train else 1
        self.image_dir = self.root / "images" / image_folder
        self.refs_path = self.root / dataset / f"refs({self.split_by}).p"
        self.coco = load_coco(self.root / dataset / "instances.json")
        refs = [ref for ref in load_refs(self.refs_path) if in_split(str(ref["split"]), split)]
        if not refs:
            raise ValueError(f"{self.refs_path} has no refs in split {split!r}")
        for ref in refs:
            self._check_ref(ref)
        refs.sort(key=lambda ref: (ref["image_id"], ref["ref_id"]))
        self.refs: dict[int, dict] = {}
        self.image_refs: dict[int, list[int]] = {}
        for ref in refs:
            if ref["ref_id"] in self.refs:
                raise ValueError(f"{self.refs_path}: ref id {ref['ref_id']} appears twice")
            self.refs[ref["ref_id"]] = ref
            self.image_refs.setdefault(ref["image_id"], []).append(ref["ref_id"])
        self.items: list[tuple[int, int | None]] = (
            [(ref["ref_id"], None) for ref in refs]
            if train
            else [(ref["ref_id"], k) for ref in refs for k in range(len(ref["sentences"]))]
        )
        self._ids = [self._sample_id(ref_id, k) for ref_id, k in self.items]
        if len(set(self._ids)) != len(self._ids):
            raise ValueError(f"{self.refs_path}: ref or sentence ids repeat in split {split!r}")

    def _check_ref(self, ref: dict) -> None:
        ref_id, ann_id, image_id = ref["ref_id"], ref["ann_id"], ref["image_id"]
        ids = [ref_id, ann_id, image_id] + [sentence["sent_id"] for sentence in ref["sentences"]]
        if any(isinstance(value, bool) or not isinstance(value, int) for value in ids):
            raise ValueError(f"{self.refs_path}: ref {ref_id!r} has non-integer ref, annotation, image or sentence ids")
        ann = self.coco.annotations.get(ann_id)
        if ann is None:
            raise KeyError(f"{self.refs_path}: ref {ref_id} names annotation {ann_id!r}, not in {self.coco.path}")
        if ann["image_id"] != image_id:
            raise ValueError(
                f"{self.refs_path}: ref {ref_id} is on image {image_id} but annotation {ann_id} is on {ann['image_id']}"
            )

    def _sample_id(self, ref_id: int, sentence: int | None) -> str:
        ref = self.refs[ref_id]
        last = ref_id if sentence is None else ref["sentences"][sentence]["sent_id"]
        return f"{dataset_slug(self.dataset)}/{self.split}/{ref['image_id']}/{last}"

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self) -> list[str]:
        """``<dataset>/<split>/<image_id>/<sent_id>`` (evaluation) or ``.../<ref_id>`` (training), in item order."""
        return list(self._ids)

    def __getitem__(self, index: int) -> Sample:
        ref_id, sentence = self.items[index]
        ref = self.refs[ref_id]
        image_info = self.coco.images[ref["image_id"]]
        where = f"{self.dataset} {self.split} ref {ref_id} (image {ref['image_id']})"
        rng = np.random.default_rng([self.seed, index]) if self.train else None
        ref_ids = [ref_id]
        if self.expressions_per_sample > 1:
            others = [other for other in self.image_refs[ref["image_id"]] if other != ref_id]
            count = min(self.expressions_per_sample - 1, len(others))
            ref_ids += [others[i] for i in rng.choice(len(others), size=count, replace=False)]
        sentences = [
            self.refs[r]["sentences"][sentence if rng is None else int(rng.integers(len(self.refs[r]["sentences"])))]
            for r in ref_ids
        ]
        texts = [s["sent"].strip() for s in sentences]
        if not all(texts):
            raise ValueError(f"{where}: an empty sentence (sent_ids {[s['sent_id'] for s in sentences]})")

        path = self.image_dir / image_info["file_name"]
        image = read_rgb(path, where)
        height, width = image_info["height"], image_info["width"]
        check_size(image, height, width, where, path)
        masks = np.stack(
            [
                segmentation_mask(
                    self.coco.annotations[self.refs[r]["ann_id"]]["segmentation"],
                    height,
                    width,
                    f"{where}: annotation {self.refs[r]['ann_id']} of {self.coco.path}",
                )
                for r in ref_ids
            ]
        )
        category = self.coco.categories.get(ref.get("category_id"), {}).get("name")
        meta = {
            "image_id": ref["image_id"],
            "ref_id": ref_id,
            "ann_id": ref["ann_id"],
            "category": category,
            "exp": texts[0],
            "ref_ids": ref_ids,
            "exps": texts,
        }
        if sentence is not None:
            meta["sent_id"] = sentences[0]["sent_id"]
        return Sample(
            sample_id=self._ids[index],
            frames=image[None],
            frame_names=[Path(image_info["file_name"]).stem],
            conversation=[
                {"role": "user", "content": referring_seg_question(texts, medium="image")},
                {"role": "assistant", "content": referring_seg_answer(len(texts))},
            ],
            masks=masks[:, None],
            medium="image",
            meta=meta,
        )


# ---- registration --------------------------------------------------------------------------------

EVALUATED: dict[str, tuple[str, ...]] = {
    "refcoco": ("val", "testA", "testB"),
    "refcoco+": ("val", "testA", "testB"),
    "refcocog": ("val", "test"),
    "refclef": ("val", "test", "testA", "testB", "testC"),
}
"""Benchmark splits per dataset: UNC's val/testA/testB, UMD's val/test; RefCLEF's of both its splitBys."""


def _register(dataset: str) -> None:
    image_folder = REFER_DATASETS[dataset][1]

    def required_paths(root: Path, split: str) -> list[Path]:
        return [root / dataset / "instances.json", root / "images" / image_folder]

    @register_dataset(dataset, family="ref_seg", required_paths=required_paths, evaluated_splits=EVALUATED[dataset])
    def build(
        root: Path,
        split: str,
        *,
        num_frames: int | None,
        train: bool,
        seed: int,
        split_by: str | None = None,
        expressions_per_sample: int = 1,
    ) -> ReferDataset:
        """A REFER dataset split as :class:`ReferDataset` reads it; images are one frame (``num_frames`` is unused)."""
        return ReferDataset(root, dataset, split, split_by, train, seed, expressions_per_sample)


for _dataset in REFER_DATASETS:
    _register(_dataset)
