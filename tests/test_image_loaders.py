"""Image segmentation loaders read their official formats: REFER (RefCOCO/+/g, RefCLEF), ReasonSeg,
ADE20K, COCO-Stuff, PASCAL-Part and PACO-LVIS, written by :mod:`utils.synthetic.image_formats`."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from utils.data.catalog import EVALUATED_SPLITS, LOADERS
from utils.data.prompts import reasoning_seg_question, referring_seg_answer, referring_seg_question
from utils.data.reasonseg import ReasonSegDataset
from utils.data.refer import REFER_DATASETS, dataset_slug, load_refs
from utils.data.semantic_seg import (
    ADE20K_CLASSES,
    COCOSTUFF_CLASSES,
    LabelMapDataset,
    ade20k_class_ids,
    cocostuff_class_ids,
)
from utils.synthetic.image_formats import (
    make_scene,
    write_ade20k,
    write_cocostuff,
    write_paco_lvis,
    write_pascal_part,
    write_reasonseg,
    write_refer,
)

SIZE = 64
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
REFER = ("refcoco", "refcoco+", "refcocog", "refclef")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format in LISA's ``dataset/`` layout, written once."""
    base = tmp_path_factory.mktemp("image_formats")
    for dataset in ("refcoco", "refcoco+", "refclef"):
        write_refer(base / "refer_seg", dataset)
    write_refer(base / "refer_seg", "refcocog", split_bys=("umd", "google"))
    for split in ("train", "val"):
        write_reasonseg(base / "reason_seg", split)
    write_ade20k(base / "ade20k")
    write_cocostuff(base / "cocostuff")
    write_pascal_part(base / "vlpart" / "pascal_part")
    write_paco_lvis(base / "vlpart" / "paco")
    return base


@pytest.fixture
def base(source: Path, tmp_path: Path) -> Path:
    """A private copy of every format, free to corrupt."""
    shutil.copytree(source, tmp_path / "dataset")
    return tmp_path / "dataset"


def _build(loader: str, root: Path, split: str, train: bool = False, seed: int = 0, **options):
    return LOADERS[loader].build(root, split, num_frames=None, train=train, seed=seed, **options)


def _refs(root: Path, dataset: str, split_by: str = "unc") -> list[dict]:
    with open(root / "refer_seg" / dataset / f"refs({split_by}).p", "rb") as file:
        return pickle.load(file)  # the test's own file: plain pickle is fine here


def _instances(root: Path, dataset: str) -> dict:
    return json.loads((root / "refer_seg" / dataset / "instances.json").read_text())


def _decode(segmentation: object) -> np.ndarray:
    """pycocotools' reading of a written segmentation (polygons, one RLE or a list of RLEs)."""
    if isinstance(segmentation, list) and isinstance(segmentation[0], list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, SIZE, SIZE))).astype(bool)
    rles = segmentation if isinstance(segmentation, list) else [segmentation]
    return np.logical_or.reduce([mask_utils.decode(rle).astype(bool) for rle in rles])


def _assert_ids(dataset) -> list[str]:
    """sample_ids() is unique, path-safe and what the items say; returns it."""
    ids = dataset.sample_ids()
    assert len(ids) == len(set(ids)) == len(dataset)
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") for i in ids)
    assert [dataset[i].sample_id for i in range(len(dataset))] == ids
    return ids


# --- REFER ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", REFER)
def test_refer_evaluation_items_are_ref_sentence_pairs_with_stable_ids(source: Path, dataset: str) -> None:
    split_by = "umd" if dataset == "refcocog" else "unc"
    refs = sorted(
        (ref for ref in _refs(source, dataset, split_by) if ref["split"] == "val"),
        key=lambda ref: (ref["image_id"], ref["ref_id"]),
    )
    loaded = _build(dataset, source / "refer_seg", "val")
    expected = [
        f"{dataset_slug(dataset)}/val/{ref['image_id']}/{s['sent_id']}" for ref in refs for s in ref["sentences"]
    ]
    assert _assert_ids(loaded) == expected
    assert _build(dataset, source / "refer_seg", "val").sample_ids() == expected


@pytest.mark.parametrize("dataset", REFER)
def test_refer_masks_are_the_written_segmentation_and_the_drawn_shape(source: Path, dataset: str) -> None:
    instances = _instances(source, dataset)
    annotations = {ann["id"]: ann for ann in instances["annotations"]}
    loaded = _build(dataset, source / "refer_seg", "val")
    for index in range(len(loaded)):
        sample = loaded[index]
        ann = annotations[sample.meta["ann_id"]]
        assert sample.frames.shape == (1, SIZE, SIZE, 3) and sample.frames.dtype == np.uint8
        assert sample.masks.shape == (1, 1, SIZE, SIZE) and sample.masks.dtype == bool
        np.testing.assert_array_equal(sample.masks[0, 0], _decode(ann["segmentation"]))
        image_index = sample.meta["image_id"] - 101
        scene = make_scene(0, REFER_DATASETS[dataset][1], image_index, SIZE)
        object_index = [a["id"] for a in instances["annotations"] if a["image_id"] == sample.meta["image_id"]].index(
            ann["id"]
        )
        np.testing.assert_array_equal(sample.masks[0, 0], scene.masks[object_index])
        # The JPEG of the drawn image: its noise costs ~5 grey levels; another image is ~20 away.
        assert np.abs(sample.frames[0].astype(int) - scene.image).mean() < 8


def test_refer_sample_has_question_answer_meta_and_frame_name(source: Path) -> None:
    refs = {ref["ref_id"]: ref for ref in _refs(source, "refcoco")}
    sample = _build("refcoco", source / "refer_seg", "val")[1]
    ref = refs[sample.meta["ref_id"]]
    sentence = ref["sentences"][1]
    assert sample.meta == {
        "image_id": ref["image_id"],
        "ref_id": ref["ref_id"],
        "ann_id": ref["ann_id"],
        "category": ["circle", "square", "triangle"][ref["category_id"] - 1],
        "exp": sentence["sent"],
        "ref_ids": [ref["ref_id"]],
        "exps": [sentence["sent"]],
        "sent_id": sentence["sent_id"],
    }
    assert sample.conversation == [
        {"role": "user", "content": referring_seg_question([sentence["sent"]], medium="image")},
        {"role": "assistant", "content": referring_seg_answer(1)},
    ]
    assert sample.frame_names == [f"COCO_train2014_{ref['image_id']:012d}"]


def test_refer_splits_follow_refer_get_ref_ids(base: Path) -> None:
    path = base / "refer_seg" / "refcoco" / "refs(unc).p"
    refs = _refs(base, "refcoco")
    moved = next(ref for ref in refs if ref["split"] == "train")
    moved["split"] = "testAB"
    path.write_bytes(pickle.dumps(refs, protocol=2))
    root = base / "refer_seg"
    test_a, test_b, test = (_build("refcoco", root, split, train=True) for split in ("testA", "testB", "test"))
    for loaded in (test_a, test_b):
        assert moved["ref_id"] in loaded.refs
    assert set(test.refs) == set(test_a.refs) | set(test_b.refs)
    assert moved["ref_id"] not in _build("refcoco", root, "train", train=True).refs
    with pytest.raises(ValueError, match="unknown REFER split 'testD'"):
        _build("refcoco", root, "testD")


def test_refer_split_by_option_reads_the_other_refs_file(source: Path) -> None:
    root = source / "refer_seg"
    assert _build("refcocog", root, "val").split_by == "umd"
    google = _build("refcocog", root, "val", split_by="google")
    refs = [ref for ref in _refs(source, "refcocog", "google") if ref["split"] == "val"]
    assert len(google) == sum(len(ref["sentences"]) for ref in refs)
    with pytest.raises(ValueError, match="no refs in split 'test'"):
        _build("refcocog", root, "test", split_by="google")


def test_refer_training_items_are_refs_drawn_from_seed_and_index(source: Path) -> None:
    root = source / "refer_seg"
    loaded = _build("refcoco", root, "train", train=True, seed=3, expressions_per_sample=2)
    again = _build("refcoco", root, "train", train=True, seed=3, expressions_per_sample=2)
    refs = {ref["ref_id"]: ref for ref in _refs(source, "refcoco")}
    assert _assert_ids(loaded) == [f"refcoco/train/{refs[r]['image_id']}/{r}" for r in loaded.refs]
    for index in range(len(loaded)):
        sample, same = loaded[index], again[index]
        assert sample.meta == same.meta and sample.conversation == same.conversation
        np.testing.assert_array_equal(sample.masks, same.masks)
        first, other = sample.meta["ref_ids"]
        assert first == loaded.items[index][0] and other != first
        assert refs[other]["image_id"] == refs[first]["image_id"] and refs[other]["split"] == "train"
        for text, ref_id in zip(sample.meta["exps"], (first, other), strict=True):
            assert text in [s["sent"] for s in refs[ref_id]["sentences"]]
        assert sample.masks.shape == (2, 1, SIZE, SIZE)
    draws = {
        tuple(_build("refcoco", root, "train", train=True, seed=seed)[i].meta["exp"] for i in range(len(loaded)))
        for seed in range(6)
    }
    assert len(draws) > 1


def test_refs_pickle_with_code_is_refused_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    for payload, name in ((os.system, "system"), ([{"ref_id": 1}, Exploit()], "system"), ({1, 2}, "set")):
        path = tmp_path / "refs(unc).p"
        path.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(ValueError, match=rf"refs\(unc\)\.p is not a plain-data refs pickle.*{name}"):
            load_refs(path)
    assert not marker.exists()


def test_refer_bad_input_names_the_sample_and_file(base: Path) -> None:
    root = base / "refer_seg"
    instances = _instances(base, "refcoco")
    first = instances["images"][0]
    (root / "images" / "mscoco" / "images" / "train2014" / first["file_name"]).unlink()
    loaded = _build("refcoco", root, "train", train=True)
    with pytest.raises(FileNotFoundError, match=f"refcoco train ref 1 .*{first['file_name']}"):
        loaded[0]

    refs = _refs(base, "refcoco")
    refs[0]["ann_id"] = 999999
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(KeyError, match=r"ref 1 names annotation 999999, not in .*instances\.json"):
        _build("refcoco", root, "train", train=True)

    (root / "refcoco+" / "instances.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"refcoco\+/instances\.json is not valid JSON"):
        _build("refcoco+", root, "val")


@pytest.mark.parametrize(
    "polygon, expected",
    [
        ([-10, -10, 20, -10, 20, 20, -10, 20], (slice(0, 20), slice(0, 20))),  # clipped to the image, as pycocotools
        ([60, 60, 90, 60, 90, 90, 60, 90], (slice(60, 64), slice(60, 64))),
        ([100, 100, 120, 100, 120, 120], None),  # wholly outside: no pixel -> error
    ],
)
def test_refer_polygons_outside_the_image_are_clipped_or_refused(base: Path, polygon: list, expected) -> None:
    root = base / "refer_seg"
    instances = _instances(base, "refclef")
    refs = [ref for ref in _refs(base, "refclef") if ref["split"] == "val"]
    ann = next(a for a in instances["annotations"] if a["id"] == refs[0]["ann_id"])
    ann["segmentation"] = [polygon]
    (root / "refclef" / "instances.json").write_text(json.dumps(instances))
    loaded = _build("refclef", root, "val")
    if expected is None:
        with pytest.raises(ValueError, match=rf"refclef val ref {refs[0]['ref_id']} .*covers no pixel"):
            loaded[0]
        return
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[expected] = True
    np.testing.assert_array_equal(loaded[0].masks[0, 0], mask)


def test_refer_image_of_another_size_than_annotated_is_an_error(base: Path) -> None:
    root = base / "refer_seg"
    image = _instances(base, "refcoco")["images"][0]
    path = root / "images" / "mscoco" / "images" / "train2014" / image["file_name"]
    Image.new("RGB", (SIZE, SIZE // 2)).save(path)
    with pytest.raises(ValueError, match=f"is {SIZE // 2}x{SIZE}, its annotation says {SIZE}x{SIZE}"):
        _build("refcoco", root, "train", train=True)[0]


# --- ReasonSeg ------------------------------------------------------------------------------------


def test_reasonseg_evaluation_asks_the_first_query(source: Path) -> None:
    loaded = _build("reasonseg", source / "reason_seg", "val")
    split_dir = source / "reason_seg" / "ReasonSeg" / "val"
    names = sorted(path.stem for path in split_dir.glob("*.jpg"))
    assert _assert_ids(loaded) == [f"reasonseg/val/{name}/0" for name in names]
    for index, name in enumerate(names):
        annotation = json.loads((split_dir / f"{name}.json").read_text())
        sample = loaded[index]
        text = annotation["text"][0]
        question = (
            reasoning_seg_question(text, medium="image")
            if annotation["is_sentence"]
            else referring_seg_question([text], medium="image")
        )
        assert sample.conversation[0] == {"role": "user", "content": question}
        assert sample.meta["text"] == text and sample.meta["text_index"] == 0
        assert sample.masks.shape == (1, 1, SIZE, SIZE) and sample.meta["void"].shape == (1, SIZE, SIZE)
        assert sample.masks.any() and sample.meta["void"].any() and sample.frame_names == [name]
    assert {loaded[i].meta["is_sentence"] for i in range(len(loaded))} == {True, False}


def _labelme(shapes: list[tuple[str, list]], text: object = ("the thing",), is_sentence: bool = False) -> dict:
    return {
        "shapes": [{"label": label, "points": points, "shape_type": "polygon"} for label, points in shapes],
        "text": list(text) if isinstance(text, tuple) else text,
        "is_sentence": is_sentence,
        "imageHeight": SIZE,
        "imageWidth": SIZE,
    }


def _write_reasonseg_image(root: Path, name: str, annotation: dict, encoding: str = "utf-8") -> None:
    split_dir = root / "ReasonSeg" / "val"
    split_dir.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIZE, SIZE), (40, 40, 40)).save(split_dir / f"{name}.jpg")
    (split_dir / f"{name}.json").write_bytes(json.dumps(annotation, ensure_ascii=False).encode(encoding))


def test_reasonseg_masks_follow_lisa_rasterisation(tmp_path: Path) -> None:
    big_ignore = [[2.9, 2.9], [60.7, 3.2], [61.5, 61.9], [3.1, 60.2]]
    small_target = [[20.6, 20.2], [40.9, 21.7], [30.5, 44.8]]
    outside = [[50.0, 50.0], [90.0, 55.0], [70.0, 95.0]]  # clipped, as cv2 draws it
    flag = [[0.0, 0.0], [63.0, 0.0], [0.0, 63.0]]
    shapes = [("target", small_target), ("Ignore", big_ignore), ("target", outside), ("flag", flag)]
    _write_reasonseg_image(tmp_path, "a", _labelme(shapes))
    sample = ReasonSegDataset(tmp_path, "val")[0]
    # LISA: polygons (int32-truncated) drawn largest area first, polylines + fillPoly, ignore 255, target 1.
    expected = np.zeros((SIZE, SIZE), np.uint8)
    for points, value in ((big_ignore, 255), (outside, 1), (small_target, 1)):
        array = np.array([points], dtype=np.int32)
        cv2.polylines(expected, array, True, value, 1)
        cv2.fillPoly(expected, array, value)
    np.testing.assert_array_equal(sample.masks[0, 0], expected == 1)
    np.testing.assert_array_equal(sample.meta["void"][0], expected == 255)
    assert sample.masks[0, 0, 30, 30] and not sample.meta["void"][0, 30, 30]  # the small target drawn last
    assert sample.masks[0, 0, SIZE - 1].any()  # the polygon leaving the image is cut at its edge
    assert not sample.masks[0, 0, 0, 20] and sample.meta["void"][0, 5, 20]  # the flag is not drawn


def test_reasonseg_reads_cp1252_json_and_a_lone_query_string(tmp_path: Path) -> None:
    target = [[10.0, 10.0], [40.0, 10.0], [40.0, 40.0]]
    annotation = _labelme([("target", target)], text="the café sign", is_sentence=False)
    _write_reasonseg_image(tmp_path, "b", annotation, encoding="cp1252")
    sample = ReasonSegDataset(tmp_path, "val")[0]
    assert sample.meta["text"] == "the café sign"
    assert sample.conversation[0]["content"] == referring_seg_question(["the café sign"], medium="image")


def test_reasonseg_training_draws_a_query_from_seed_and_index(source: Path) -> None:
    root = source / "reason_seg"
    loaded = _build("reasonseg", root, "train", train=True, seed=1)
    assert _assert_ids(loaded) == [f"reasonseg/train/synthetic_{i:04d}" for i in range(len(loaded))]
    again = _build("reasonseg", root, "train", train=True, seed=1)
    assert [loaded[i].meta["text"] for i in range(len(loaded))] == [again[i].meta["text"] for i in range(len(again))]
    draws = {
        tuple(_build("reasonseg", root, "train", train=True, seed=s)[i].meta["text_index"] for i in range(len(loaded)))
        for s in range(8)
    }
    assert len(draws) > 1 and all(set(d) <= {0, 1} for d in draws)


def test_reasonseg_target_matches_the_drawn_object(source: Path) -> None:
    sample = _build("reasonseg", source / "reason_seg", "val")[0]
    scene = make_scene(0, "reasonseg/val", 0, SIZE)
    overlaps = [(sample.masks[0, 0] & m).sum() / (sample.masks[0, 0] | m).sum() for m in scene.masks]
    assert max(overlaps) > 0.7


@pytest.mark.parametrize(
    "annotation, error, message",
    [
        (_labelme([("ignore", [[1.0, 1.0], [30.0, 1.0], [30.0, 30.0]])]), ValueError, "no target pixel"),
        (_labelme([("target", [[1.0, 1.0], [30.0]])]), ValueError, "points that are not"),
        (
            {**_labelme([("target", [[1.0, 1.0], [30.0, 1.0], [9.0, 9.0]])]), "imageHeight": 10},
            ValueError,
            "says 10x64",
        ),
        ({**_labelme([("target", [[1.0, 1.0], [30.0, 1.0], [9.0, 9.0]])]), "text": []}, ValueError, "'text'"),
    ],
)
def test_reasonseg_bad_annotations_are_errors_naming_the_file(tmp_path: Path, annotation, error, message) -> None:
    _write_reasonseg_image(tmp_path, "c", annotation)
    with pytest.raises(error, match=rf"reasonseg val image c .*c\.json.*{message}"):
        ReasonSegDataset(tmp_path, "val")[0]


def test_reasonseg_missing_json_is_an_error(base: Path) -> None:
    split_dir = base / "reason_seg" / "ReasonSeg" / "val"
    (split_dir / "synthetic_0000.json").unlink()
    with pytest.raises(FileNotFoundError, match="synthetic_0000.json"):
        _build("reasonseg", base / "reason_seg", "val")[0]


# --- semantic segmentation ------------------------------------------------------------------------


def test_ade20k_classes_are_png_values_minus_one_and_other_is_never_asked(source: Path) -> None:
    root = source / "ade20k"
    loaded = _build("ade20k", root, "training", classes_per_sample=5)
    names = sorted(path.stem for path in (root / "images" / "training").glob("*.jpg"))
    assert _assert_ids(loaded) == [f"ade20k/training/{name}" for name in names]
    for index, name in enumerate(names):
        label = np.array(Image.open(root / "annotations" / "training" / f"{name}.png"))
        sample = loaded[index]
        values = [int(v) for v in np.unique(label) if v != 0]
        assert sample.meta["class_ids"] == [v - 1 for v in values]
        assert sample.meta["classes"] == [ADE20K_CLASSES[v - 1] for v in values]
        np.testing.assert_array_equal(sample.masks[:, 0], np.stack([label == v for v in values]))
        assert sample.conversation[0]["content"] == referring_seg_question(sample.meta["classes"], medium="image")
        assert sample.conversation[1]["content"] == referring_seg_answer(len(values))


def test_cocostuff_hyphenated_and_unlabeled_pixels_are_never_asked(source: Path) -> None:
    root = source / "cocostuff"
    loaded = _build("cocostuff", root, "train2017", classes_per_sample=10)
    assert _assert_ids(loaded) == [f"cocostuff/train2017/{i:012d}" for i in range(1, 4)]
    for index in range(len(loaded)):
        label = np.array(Image.open(root / "train2017" / f"{index + 1:012d}.png"))
        sample = loaded[index]
        assert COCOSTUFF_CLASSES.index("wall-other") in np.unique(label) and 255 in np.unique(label)
        values = [int(v) for v in np.unique(label) if v != 255 and "-" not in COCOSTUFF_CLASSES[v]]
        assert sample.meta["class_ids"] == values
        assert sample.meta["classes"] == [COCOSTUFF_CLASSES[v] for v in values]
        np.testing.assert_array_equal(sample.masks[:, 0], np.stack([label == v for v in values]))


def test_label_values_outside_the_class_list_are_errors() -> None:
    with pytest.raises(ValueError, match="label value 151 is outside ADE20K's 0..150"):
        ade20k_class_ids(np.array([[0, 151]], np.uint8), "here")
    with pytest.raises(ValueError, match=r"label values \[182, 200\] are not COCO-Stuff classes"):
        cocostuff_class_ids(np.array([[0, 182, 200, 255]], np.uint8), "here")
    np.testing.assert_array_equal(ade20k_class_ids(np.array([[0, 1, 150]], np.uint8), "here"), [[255, 0, 149]])


def test_label_map_png_must_be_single_channel_and_present(base: Path) -> None:
    root = base / "cocostuff"
    Image.new("RGB", (SIZE, SIZE)).save(root / "train2017" / "000000000001.png")
    (root.parent / "coco" / "train2017" / "000000000002.jpg").unlink()
    loaded = _build("cocostuff", root, "train2017")
    with pytest.raises(ValueError, match=r"cocostuff train2017 image 000000000001: .* mode RGB PNG"):
        loaded[0]
    with pytest.raises(FileNotFoundError, match=r"image 000000000002: missing image .*000000000002\.jpg"):
        loaded[1]


def test_pascal_part_masks_are_category_unions_named_object_part(source: Path) -> None:
    root = source / "vlpart" / "pascal_part"
    data = json.loads((root / "train.json").read_text())
    assert min(ann["id"] for ann in data["annotations"]) == 0
    names = {cat["id"]: cat["name"] for cat in data["categories"]}
    loaded = _build("pascal_part", root, "train", classes_per_sample=20)
    assert _assert_ids(loaded) == [f"pascal_part/train/{image['id']}" for image in data["images"]]
    for index, image in enumerate(data["images"]):
        anns = [ann for ann in data["annotations"] if ann["image_id"] == image["id"]]
        present = sorted({ann["category_id"] for ann in anns})
        sample = loaded[index]
        assert sample.meta["class_ids"] == present and sample.frame_names == [Path(image["file_name"]).stem]
        for k, category in enumerate(present):
            union = np.logical_or.reduce([_decode(a["segmentation"]) for a in anns if a["category_id"] == category])
            np.testing.assert_array_equal(sample.masks[k, 0], union)
            obj, part = names[category].split(":")
            assert sample.meta["classes"][k] == f"{obj} {part}"  # not training: the first form


def test_paco_lvis_names_are_cleaned_and_empty_segmentations_skipped(source: Path) -> None:
    root = source / "vlpart" / "paco"
    data = json.loads((root / "annotations" / "paco_lvis_v1_train.json").read_text())
    loaded = _build("paco_lvis", root, "train", classes_per_sample=20)
    assert _assert_ids(loaded) == [f"paco_lvis/train/{image['id']}" for image in data["images"]]
    sample = loaded[0]
    anns = [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"] and a["segmentation"]]
    assert sample.meta["class_ids"] == sorted({a["category_id"] for a in anns})
    names = {cat["id"]: cat["name"] for cat in data["categories"]}
    for k, category in enumerate(sample.meta["class_ids"]):
        cleaned = names[category].replace("_(shape)", "").replace("_", " ").split(":")
        assert sample.meta["classes"][k] == " ".join(cleaned)
        union = np.logical_or.reduce([_decode(a["segmentation"]) for a in anns if a["category_id"] == category])
        np.testing.assert_array_equal(sample.masks[k, 0], union)
    training = {
        _build("paco_lvis", root, "train", train=True, seed=s, classes_per_sample=20)[0].meta["classes"][0]
        for s in range(20)
    }
    assert any(name.startswith("the ") and " of the " in name for name in training)


def test_semantic_training_draws_classes_from_seed_and_index(source: Path) -> None:
    root = source / "vlpart" / "pascal_part"
    first = _build("pascal_part", root, "train", train=True, seed=5, classes_per_sample=2)
    second = _build("pascal_part", root, "train", train=True, seed=5, classes_per_sample=2)
    for index in range(len(first)):
        assert first[index].meta == second[index].meta
        np.testing.assert_array_equal(first[index].masks, second[index].masks)
        assert len(first[index].meta["class_ids"]) == 2
    picks = {tuple(_build("pascal_part", root, "train", train=True, seed=s)[1].meta["class_ids"]) for s in range(10)}
    assert len(picks) > 1


def test_coco_format_annotation_of_an_unknown_image_is_a_key_error(base: Path) -> None:
    path = base / "vlpart" / "paco" / "annotations" / "paco_lvis_v1_train.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 424242
    path.write_text(json.dumps(data))
    with pytest.raises(KeyError, match=r"paco_lvis_v1_train\.json: annotation 1 names image 424242"):
        _build("paco_lvis", base / "vlpart" / "paco", "train")


def test_real_davis_pngs_as_label_maps() -> None:
    davis = FIXTURES / "davis"
    if not davis.is_dir():
        pytest.skip(f"shared fixtures absent ({davis})")
    image = davis / "JPEGImages" / "480p" / "car-shadow" / "00000.jpg"
    osvos = davis / "predictions" / "osvos" / "car-shadow" / "00000.png"  # mode P, indices {0, 1}
    gt = davis / "Annotations" / "480p" / "car-shadow" / "00000.png"  # mode L, {0, 255}
    as_ade = LabelMapDataset("ade20k", "real", [("car-shadow", image, osvos)], ADE20K_CLASSES, ade20k_class_ids)
    sample = as_ade[0]
    assert sample.frames.shape == (1, 480, 854, 3) and sample.meta["classes"] == ["wall"]
    np.testing.assert_array_equal(sample.masks[0, 0], np.array(Image.open(osvos)) == 1)
    with pytest.raises(ValueError, match="label value 255 is outside ADE20K"):
        LabelMapDataset("ade20k", "real", [("gt", image, gt)], ADE20K_CLASSES, ade20k_class_ids)[0]
    # Read as COCO-Stuff, 255 is "unlabeled" and 0 is "person": the object is never asked, the background is.
    as_stuff = LabelMapDataset("cocostuff", "real", [("gt", image, gt)], COCOSTUFF_CLASSES, cocostuff_class_ids)[0]
    assert as_stuff.meta["classes"] == ["person"]
    np.testing.assert_array_equal(as_stuff.masks[0, 0], np.array(Image.open(gt)) == 0)


# --- registry -------------------------------------------------------------------------------------


IMAGE_LOADERS = [
    ("refcoco", "ref_seg", "refer_seg", "train"),
    ("refcoco+", "ref_seg", "refer_seg", "train"),
    ("refcocog", "ref_seg", "refer_seg", "train"),
    ("refclef", "ref_seg", "refer_seg", "train"),
    ("reasonseg", "reason_seg", "reason_seg", "train"),
    ("ade20k", "sem_seg", "ade20k", "training"),
    ("cocostuff", "sem_seg", "cocostuff", "train2017"),
    ("pascal_part", "sem_seg", "vlpart/pascal_part", "train"),
    ("paco_lvis", "sem_seg", "vlpart/paco", "train"),
]
"""``(loader, family, root under the written base, a training split)`` of every image loader."""


@pytest.mark.parametrize("loader, family, root, split", IMAGE_LOADERS)
def test_image_loaders_give_one_image_samples_without_timestamps(
    source: Path, loader: str, family: str, root: str, split: str
) -> None:
    dataset = _build(loader, source / root, split, train=True)
    for sample in (dataset[i] for i in range(min(3, len(dataset)))):
        assert sample.medium == "image" and sample.timestamps is None and sample.frames.shape[0] == 1


@pytest.mark.parametrize("loader, family, root, split", IMAGE_LOADERS)
def test_registered_loaders_name_paths_that_exist(
    source: Path, loader: str, family: str, root: str, split: str
) -> None:
    assert LOADERS[loader].family == family
    for path in LOADERS[loader].required_paths(source / root, split):
        assert path.exists(), path
    assert (loader, split) not in EVALUATED_SPLITS
    assert len(_build(loader, source / root, split, train=True)) > 0


def test_benchmark_splits_are_registered_as_evaluated() -> None:
    for loader in ("refcoco", "refcoco+"):
        assert {(loader, s) for s in ("val", "testA", "testB")} <= EVALUATED_SPLITS
    assert {("refcocog", "val"), ("refcocog", "test"), ("reasonseg", "val"), ("reasonseg", "test")} <= EVALUATED_SPLITS
    assert not any(loader in ("ade20k", "cocostuff", "pascal_part", "paco_lvis") for loader, _ in EVALUATED_SPLITS)
