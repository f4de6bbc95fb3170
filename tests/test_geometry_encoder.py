"""The geometry encoder (DSR Suite's GSM): a frozen Pi3 encoder's tokens, selected by the question through two
Q-Formers, appended after the video; the collator's question mask and geometry frames; packed rows."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Dinov2WithRegistersModel

from model.builder import build_unigr, load_unigr
from model.encoders.geometry import GEOMETRY_PLACEHOLDER, GeometryEncoder, QFormerLayer, WordMatching
from model.geometry import Pi3Config, Pi3Model, encoder_state_dict_to_pi3, pi3_encoder_config, pi3_state_dict
from model.input_assembly import InputAssembly
from utils.data.collate import IGNORE_INDEX, SampleCollator
from utils.data.schema import Sample
from utils.synthetic.moving_shapes import WorldConfig, make_video
from utils.training.trainable import configure_trainable, group_prefixes

PI3_TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=56)
NUM_QUERIES = 4
QUESTION = "Which shape moves to the left?"


@pytest.fixture(scope="module")
def pi3_checkpoint(tmp_path_factory) -> Path:
    """A random tiny Pi3 encoder written in Pi3's ``model.safetensors`` layout (``encoder.*``, fused qkv) beside a
    decoder key the loader must ignore."""
    torch.manual_seed(0)
    encoder = Dinov2WithRegistersModel(pi3_encoder_config(**PI3_TINY))
    with torch.no_grad():  # registers and layer scales are tiny at init; make every parameter matter
        for parameter in encoder.parameters():
            parameter.normal_(0.0, 0.3)
    state = encoder_state_dict_to_pi3(encoder.state_dict())
    state["decoder.0.norm1.weight"] = torch.ones(16)
    path = tmp_path_factory.mktemp("pi3") / "model.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path


TINY_GSM = dict(num_queries=NUM_QUERIES, qformer_layers=1, qformer_heads=2, qformer_hidden_size=16)
"""The tiny Q-Formers' options of every test GSM."""


def _gsm_model(backbone, **options) -> tuple:
    """A tiny UniGR with a tiny GSM of ``options`` (the Pi3 checkpoint and config, and anything else), in eval mode."""
    torch.manual_seed(0)
    model, processor = build_unigr(backbone, None, encoders={"geometry": {**TINY_GSM, **options}})
    return model.eval(), processor


@pytest.fixture(scope="module")
def gsm_model(tiny_parts, pi3_checkpoint: Path):
    return _gsm_model(tiny_parts["backbone"], pi3_checkpoint=str(pi3_checkpoint), pi3_config=PI3_TINY)


def _positioned_gsm_model(tiny_parts, pi3_checkpoint: Path, **options) -> tuple:
    """A tiny UniGR whose GSM's geometry tokens carry their place and time (``token_positions``), with ``options``."""
    return _gsm_model(
        tiny_parts["backbone"], pi3_checkpoint=str(pi3_checkpoint), pi3_config=PI3_TINY, token_positions=True, **options
    )


@pytest.fixture(scope="module")
def positioned_gsm_model(tiny_parts, pi3_checkpoint: Path):
    return _positioned_gsm_model(tiny_parts, pi3_checkpoint)


@pytest.fixture(scope="module")
def appearance_gsm_model(tiny_parts, pi3_checkpoint: Path):
    """Q-Former 2 also finds geometry tokens by their video tokens (``appearance_keys``)."""
    return _positioned_gsm_model(tiny_parts, pi3_checkpoint, appearance_keys=True)


@pytest.fixture(scope="module")
def question_times_gsm_model(tiny_parts, pi3_checkpoint: Path):
    """The question tokens that name a time carry its code (``question_times``)."""
    return _positioned_gsm_model(tiny_parts, pi3_checkpoint, question_times=True)


@pytest.fixture(scope="module")
def word_matching_gsm_model(tiny_parts, pi3_checkpoint: Path):
    """Q-Former 2's attention also gets the question words' prior (``word_matching``)."""
    return _positioned_gsm_model(tiny_parts, pi3_checkpoint, word_matching=True)


def _video(seed: int, num_frames: int = 4, size: int = 64, question: str = QUESTION) -> Sample:
    video = make_video(seed, "train", 0, WorldConfig(height=size, width=size, num_frames=num_frames))
    return Sample(
        sample_id=f"shapes/train/{seed}",
        frames=video.frames,
        frame_names=[str(t) for t in range(num_frames)],
        conversation=[{"role": "user", "content": question}, {"role": "assistant", "content": "The red square."}],
        timestamps=np.arange(num_frames) / 4,
    )


def _image(seed: int) -> Sample:
    sample = _video(seed, num_frames=1)
    return dataclasses.replace(sample, medium="image", timestamps=None, sample_id=f"shapes/image/{seed}")


def _assemble(model, batch: dict, encoders: bool = True) -> torch.Tensor:
    """``(B, L, D)`` input embeddings of ``batch`` (with the model's encoders, or Qwen's stock assembly)."""
    assembly = model.input_assembly if encoders else InputAssembly({})
    with torch.no_grad():
        return assembly(
            model.backbone.model,
            batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            pixel_values=batch.get("pixel_values"),
            image_grid_thw=batch.get("image_grid_thw"),
            pixel_values_videos=batch.get("pixel_values_videos"),
            video_grid_thw=batch.get("video_grid_thw"),
            batch=batch,
            token_ids=model.placeholder_token_ids(),
        )


def _appended(model, batch: dict, embeds: torch.Tensor) -> list[torch.Tensor]:
    """Per row the ``(k * NUM_QUERIES, D)`` embeddings at its ``<geometry>`` placeholders."""
    placeholder = model.placeholder_token_ids()[GEOMETRY_PLACEHOLDER]
    return [embeds[row, batch["input_ids"][row] == placeholder] for row in range(len(embeds))]


def test_the_tiny_pi3_checkpoint_loads_strictly_and_frozen(gsm_model, pi3_checkpoint: Path) -> None:
    model, _ = gsm_model
    encoder = model.input_assembly.encoders["geometry"]
    saved = encoder_state_dict_to_pi3(encoder.pi3.state_dict())
    on_disk = {key: value for key, value in load_file(pi3_checkpoint).items() if key.startswith("encoder.")}
    assert sorted(saved) == sorted(on_disk)
    for key, value in on_disk.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
    assert not any(parameter.requires_grad for parameter in encoder.pi3.parameters())
    with pytest.raises(ValueError, match="model.safetensors"):  # a wider encoder than the file holds
        GeometryEncoder.from_options(
            {"pi3_checkpoint": str(pi3_checkpoint), "pi3_config": {**PI3_TINY, "hidden_size": 32}},
            model.config.backbone_config.get_text_config().hidden_size,
            model.config.backbone_config,
        )


def test_a_video_sample_gets_num_queries_tokens_right_after_its_video(gsm_model) -> None:
    model, processor = gsm_model
    sample = _video(0)
    batch = SampleCollator.for_model(model, processor)([sample])
    ids = batch["input_ids"][0]
    placeholder = model.placeholder_token_ids()[GEOMETRY_PLACEHOLDER]
    vision_end = processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")
    where = (ids == placeholder).nonzero()[:, 0]
    assert len(where) == NUM_QUERIES and int(where[0]) == int((ids == vision_end).nonzero()[0, 0]) + 1
    assert (where.diff() == 1).all()
    grid = batch["video_grid_thw"][0].tolist()
    (frames,) = batch["geometry_frames"]
    assert frames.shape == (4, 3, grid[1] * 14, grid[2] * 14) and 0 <= frames.min() and frames.max() <= 1
    encoder = model.input_assembly.encoders["geometry"]
    width = model.config.backbone_config.get_text_config().hidden_size
    geometry = encoder.geometry_tokens(frames)
    video_tokens = int((ids == model.config.backbone_config.video_token_id).sum())
    assert geometry.shape == (video_tokens, width) == (grid[0] * grid[1] * grid[2] // 4, width)
    embeds, stock = _assemble(model, batch), _assemble(model, batch, encoders=False)
    assert embeds[0, where].shape == (NUM_QUERIES, width)
    assert not torch.allclose(embeds[0, where], stock[0, where])
    outside = torch.ones_like(ids, dtype=torch.bool).index_fill(0, where, False)
    torch.testing.assert_close(embeds[0, outside], stock[0, outside], rtol=0, atol=0)


def test_the_question_mask_marks_the_same_user_text_in_training_and_inference(gsm_model) -> None:
    model, processor = gsm_model
    conversation = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "The red square."},
        {"role": "user", "content": "And which one moves up?"},
        {"role": "assistant", "content": "The blue disc."},
    ]
    sample = dataclasses.replace(_video(0), conversation=conversation)
    other = _video(1, question="Is anything moving at all in this clip?")
    train = SampleCollator.for_model(model, processor)([sample, other])
    infer = SampleCollator.for_model(model, processor, inference=True)([sample, other])
    tokenizer = processor.tokenizer
    for row in range(2):
        marked_train = train["input_ids"][row][train["question_mask"][row]]
        marked_infer = infer["input_ids"][row][infer["question_mask"][row]]
        assert marked_train.tolist() == marked_infer.tolist()
        assert (train["labels"][row][train["question_mask"][row]] == IGNORE_INDEX).all()  # never the answer
    marked = tokenizer.decode(train["input_ids"][0][train["question_mask"][0]])
    # the two questions and nothing else (no system prompt, media, placeholders or template)
    assert "".join(marked.split()) == "".join(f"{QUESTION} And which one moves up?".split())
    assert "assistant" not in marked and "square" not in marked


@pytest.mark.parametrize(
    "fixture",
    [
        "gsm_model",
        "positioned_gsm_model",
        "appearance_gsm_model",
        "question_times_gsm_model",
        "word_matching_gsm_model",
    ],
)
def test_a_packed_row_gives_each_sample_the_tokens_it_gets_alone(fixture: str, request) -> None:
    model, processor = request.getfixturevalue(fixture)
    first, second = _video(0), _video(1, num_frames=3, size=96, question="Is anything moving at 0.5 s in this clip?")
    collate = SampleCollator.for_model(model, processor)
    alone = [collate([sample]) for sample in (first, second)]
    expected = [_appended(model, batch, _assemble(model, batch))[0] for batch in alone]
    assert not torch.allclose(expected[0], expected[1])
    lengths = [batch["input_ids"].shape[1] for batch in alone]
    packed = {
        key: torch.cat([batch[key] for batch in alone], dim=1)
        for key in ("input_ids", "attention_mask", "question_mask", "question_seconds")
    }
    for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        packed[key] = torch.cat([batch[key] for batch in alone])
    packed["geometry_frames"] = [frames for batch in alone for frames in batch["geometry_frames"]]
    packed["packed_segments"] = [[(0, lengths[0]), (lengths[0], sum(lengths))]]
    (tokens,) = _appended(model, packed, _assemble(model, packed))
    torch.testing.assert_close(tokens, torch.cat(expected), rtol=1e-5, atol=1e-5)
    padded = collate([first, second])  # not packed: one sample per row, the shorter one padded
    for row, tokens in enumerate(_appended(model, padded, _assemble(model, padded))):
        torch.testing.assert_close(tokens, expected[row], rtol=1e-5, atol=1e-5)


def test_image_samples_keep_their_embeddings_and_placeholders(gsm_model) -> None:
    model, processor = gsm_model
    batch = SampleCollator.for_model(model, processor)([_image(2), _video(0)])
    assert batch["geometry_frames"][0] is None and batch["geometry_frames"][1] is not None
    embeds, stock = _assemble(model, batch), _assemble(model, batch, encoders=False)
    torch.testing.assert_close(embeds[0], stock[0], rtol=0, atol=0)
    placeholder = model.placeholder_token_ids()[GEOMETRY_PLACEHOLDER]
    own = model.get_input_embeddings().weight[placeholder]
    image_slots = _appended(model, batch, embeds)[0]
    assert image_slots.shape[0] == NUM_QUERIES
    torch.testing.assert_close(image_slots, own.expand_as(image_slots).detach(), rtol=0, atol=0)
    assert not torch.allclose(embeds[1], stock[1])


def test_pi3_gets_no_gradient_while_the_gsm_trains_at_its_own_rate(gsm_model) -> None:
    model, processor = gsm_model
    rates = {"llm": 2e-7, "encoder_geometry": 1e-6}
    groups = {
        group: {"mode": "frozen" if group == "encoder_geometry_pi3" else "full", "lr": rates.get(group)}
        for group in group_prefixes()
    }
    optimizer_groups = configure_trainable(model, groups, lr=1e-5, weight_decay=0.0, new_token_ids=[])
    lrs = {group["name"].split("/")[0]: group["lr"] for group in optimizer_groups}
    assert lrs["llm"] == 2e-7 and lrs["encoder_geometry"] == 1e-6
    encoder = model.input_assembly.encoders["geometry"]
    model.zero_grad()
    batch = SampleCollator.for_model(model, processor)([_video(0)])
    model.train()
    try:
        model(**batch).loss.backward()
    finally:
        model.eval()
    assert all(parameter.grad is None for parameter in encoder.pi3.parameters())
    gsm = {name: p for name, p in encoder.named_parameters() if not name.startswith("pi3.")}
    assert gsm and all(p.grad is not None and p.grad.abs().sum() > 0 for p in gsm.values())
    model.zero_grad()
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def test_the_appended_tokens_follow_the_question_and_the_geometry(gsm_model) -> None:
    model, processor = gsm_model
    collate = SampleCollator.for_model(model, processor)
    asked = collate([_video(0)])
    (base,) = _appended(model, asked, _assemble(model, asked))
    reworded = collate([_video(0, question="Which shape moves to the right?")])
    (other_question,) = _appended(model, reworded, _assemble(model, reworded))
    assert not torch.allclose(base, other_question, atol=1e-5)
    moved = dict(asked, geometry_frames=[asked["geometry_frames"][0].flip(-1)])  # same pixels for Qwen
    (other_geometry,) = _appended(model, moved, _assemble(model, moved))
    assert not torch.allclose(base, other_geometry, atol=1e-5)


def test_missing_or_misfit_geometry_frames_are_refused_naming_the_sample(gsm_model) -> None:
    model, processor = gsm_model
    batch = SampleCollator.for_model(model, processor)([_video(0)])
    without = {key: value for key, value in batch.items() if key != "geometry_frames"}
    with pytest.raises(ValueError, match="no geometry_frames"):
        _assemble(model, without)
    frames = batch["geometry_frames"][0]
    misfit = dict(batch, geometry_frames=[frames[..., :-14]])
    with pytest.raises(ValueError, match="batch row 0, sample 0"):
        _assemble(model, misfit)


def test_a_saved_model_brings_its_pi3_weights_and_gives_the_same_tokens(gsm_model, pi3_checkpoint, tmp_path) -> None:
    model, processor = gsm_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    hidden = pi3_checkpoint.rename(pi3_checkpoint.with_suffix(".away"))  # loading must not need Pi3's own file
    try:
        loaded, loaded_processor = load_unigr(tmp_path)
    finally:
        hidden.rename(pi3_checkpoint)
    batch = SampleCollator.for_model(model, processor)([_video(0)])
    loaded_batch = SampleCollator.for_model(loaded, loaded_processor)([_video(0)])
    torch.testing.assert_close(
        _appended(loaded.eval(), loaded_batch, _assemble(loaded, loaded_batch))[0],
        _appended(model, batch, _assemble(model, batch))[0],
    )


def test_training_and_inference_batches_append_the_same_tokens_and_generation_runs(gsm_model) -> None:
    model, processor = gsm_model
    samples = [_video(1, num_frames=3, size=96, question="Is anything moving at all in this clip?"), _video(0)]
    train = SampleCollator.for_model(model, processor)(samples)  # right padding, answers included
    infer = SampleCollator.for_model(model, processor, inference=True)(samples)  # left padding, no answers
    for trained, inferred in zip(
        _appended(model, train, _assemble(model, train)), _appended(model, infer, _assemble(model, infer))
    ):
        torch.testing.assert_close(inferred, trained, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        result = model.generate(infer, max_new_tokens=2)
    assert len(result.sequences) == 2


@pytest.fixture(scope="module")
def full_pi3_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    """A random tiny *whole* Pi3 (encoder, decoder, heads) in Pi3's ``model.safetensors`` layout, and its config."""
    torch.manual_seed(1)
    config = dataclasses.replace(Pi3Config.tiny(), encoder_image_size=56)
    pi3 = Pi3Model(config)
    with torch.no_grad():  # layer scales and registers are tiny at init; make every parameter matter
        for parameter in pi3.parameters():
            parameter.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("pi3_full") / "model.safetensors"
    save_file({key: value.contiguous() for key, value in pi3_state_dict(pi3).items()}, str(path))
    return path, dataclasses.asdict(config)


@pytest.fixture(scope="module")
def decoder_gsm_model(tiny_parts, full_pi3_checkpoint):
    path, config = full_pi3_checkpoint
    return _gsm_model(tiny_parts["backbone"], pi3_checkpoint=str(path), pi3_config=config, pi3_features="decoder")


def test_decoder_features_load_the_whole_pi3_strictly_and_frozen(decoder_gsm_model, full_pi3_checkpoint) -> None:
    model, _ = decoder_gsm_model
    path, config = full_pi3_checkpoint
    encoder = model.input_assembly.encoders["geometry"]
    saved, on_disk = pi3_state_dict(encoder.pi3), load_file(path)
    assert sorted(saved) == sorted(on_disk) and any(key.startswith("decoder.") for key in on_disk)
    for key, value in on_disk.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
    assert not any(parameter.requires_grad for parameter in encoder.pi3.parameters())
    width = model.config.backbone_config.get_text_config().hidden_size
    with pytest.raises(ValueError, match="model.safetensors"):  # more decoder blocks than the file holds
        GeometryEncoder.from_options(
            {"pi3_checkpoint": str(path), "pi3_config": {**config, "decoder_layers": 6}, "pi3_features": "decoder"},
            width,
            model.config.backbone_config,
        )
    with pytest.raises(ValueError, match="pi3_features"):
        GeometryEncoder.from_options(
            {"pi3_checkpoint": str(path), "pi3_config": config, "pi3_features": "points"},
            width,
            model.config.backbone_config,
        )


def test_decoder_tokens_see_every_frame_while_encoder_tokens_see_one(decoder_gsm_model, gsm_model) -> None:
    """Changing the clip's last two frames changes the first slot's geometry tokens with the decoder's features
    (global attention across frames), never with the encoder's (one frame at a time)."""
    frames = {}
    for name, (model, processor) in {"decoder": decoder_gsm_model, "encoder": gsm_model}.items():
        (clip,) = SampleCollator.for_model(model, processor)([_video(0)])["geometry_frames"]
        changed = clip.clone()
        changed[2:] = clip[2:].flip(-1)
        encoder = model.input_assembly.encoders["geometry"]
        with torch.no_grad():
            before, after = encoder.geometry_tokens(clip), encoder.geometry_tokens(changed)
        first_slot = len(before) // 2  # 4 frames: two slots of two frames
        frames[name] = (before[:first_slot], after[:first_slot], before[first_slot:], after[first_slot:])

    def change(before: torch.Tensor, after: torch.Tensor) -> float:
        return float((after - before).norm() / before.norm())

    first_before, first_after, second_before, second_after = frames["decoder"]
    assert change(first_before, first_after) > 1e-5 and change(second_before, second_after) > 1e-5  # float noise: 1e-7
    first_before, first_after, second_before, second_after = frames["encoder"]
    torch.testing.assert_close(first_before, first_after, rtol=0, atol=0)
    assert change(second_before, second_after) > 1e-5


def test_a_saved_decoder_gsm_model_gives_the_same_tokens_without_pi3s_file(
    decoder_gsm_model, full_pi3_checkpoint, tmp_path
) -> None:
    model, processor = decoder_gsm_model
    path, _ = full_pi3_checkpoint
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    hidden = path.rename(path.with_suffix(".away"))
    try:
        loaded, loaded_processor = load_unigr(tmp_path)
    finally:
        hidden.rename(path)
    batch = SampleCollator.for_model(model, processor)([_video(0)])
    loaded_batch = SampleCollator.for_model(loaded, loaded_processor)([_video(0)])
    torch.testing.assert_close(
        _appended(loaded.eval(), loaded_batch, _assemble(loaded, loaded_batch))[0],
        _appended(model, batch, _assemble(model, batch))[0],
    )


def test_token_positions_make_q_former_2_read_the_geometry_in_order(gsm_model, positioned_gsm_model) -> None:
    """Without positions the GSM's output is the same for any order of the geometry tokens (an unordered set) and of
    the question's tokens (a bag of words); with them, moving geometry to another place or moment, or reordering the
    question, changes what it selects."""
    torch.manual_seed(0)
    width = gsm_model[0].config.backbone_config.get_text_config().hidden_size
    question, geometry = torch.randn(5, width), torch.randn(2 * 2 * 3, width)  # grid (slots, h, w) = (2, 4, 6)
    order = torch.randperm(len(geometry))
    plain = gsm_model[0].input_assembly.encoders["geometry"]
    with torch.no_grad():
        torch.testing.assert_close(plain.select(question, geometry[order]), plain.select(question, geometry))
    positioned = positioned_gsm_model[0].input_assembly.encoders["geometry"]
    codes = positioned.token_codes([2, 4, 6], seconds_per_slot=0.5)
    assert codes.shape == (12, 16)
    with torch.no_grad():
        assert not torch.allclose(
            positioned.select(question, geometry[order], codes), positioned.select(question, geometry, codes), atol=1e-5
        )
    with pytest.raises(ValueError, match="codes"):
        positioned.select(question, geometry)
    with torch.no_grad():  # the question's word order matters too (without positions it is a bag of words)
        flipped = question.flip(0)
        torch.testing.assert_close(plain.select(flipped, geometry), plain.select(question, geometry))
        assert not torch.allclose(
            positioned.select(flipped, geometry, codes), positioned.select(question, geometry, codes), atol=1e-5
        )


def test_token_codes_tell_cells_and_moments_apart(positioned_gsm_model) -> None:
    encoder = positioned_gsm_model[0].input_assembly.encoders["geometry"]
    codes = encoder.token_codes([2, 4, 6], seconds_per_slot=0.5)  # 2 slots x 2 x 3 merged cells
    assert codes.shape == (12, 16) and len(torch.unique(codes, dim=0)) == 12
    torch.testing.assert_close(codes[:6], encoder.token_codes([1, 4, 6], seconds_per_slot=0.5))  # slot 0 at 0 s
    slower = encoder.token_codes([2, 4, 6], seconds_per_slot=1.0)
    torch.testing.assert_close(slower[:6], codes[:6])
    assert not torch.allclose(slower[6:], codes[6:])  # the second slot starts at 1 s instead of 0.5 s


def test_the_swapped_geometry_control_reads_another_videos_geometry_and_the_samples_own_video(
    gsm_model, tmp_path: Path
) -> None:
    from baselines.swapped_geometry import SwappedGeometryPredictor, donor_indices
    from evaluation.answer_predictor import UniGRAnswerPredictor
    from evaluation.benchmarks import build_benchmark_dataset
    from utils.data.dsr_bench import VIDEO_FOLDER
    from utils.synthetic.dynamic_bench_files import write_dsr_bench
    from utils.video.encode import write_video

    assert donor_indices(["a", "a", "b", "c", "c"]) == [2, 2, 3, 0, 0]
    with pytest.raises(ValueError, match="two videos"):
        donor_indices(["a", "a"])
    options = ["(A) 1.0 m", "(B) 2.0 m", "(C) 3.0 m", "(D) 4.0 m"]
    rows = [
        {"videoID": video, "question": f"How far is the square from the camera ({k})?", "options": options}
        for k, video in enumerate(["clip_a", "clip_a", "clip_b"])
    ]
    write_dsr_bench(tmp_path / "dsr", [{**row, "answer": "B"} for row in rows], num_frames=4)
    clip_b = tmp_path / "dsr" / VIDEO_FOLDER / "clip_b.mp4"
    write_video(clip_b, _video(3, num_frames=4, size=64).frames, fps=10.0)  # another size than clip_a's 32 x 48
    dataset, _ = build_benchmark_dataset("dsr_bench", tmp_path / "dsr", num_frames=4)
    model, processor = gsm_model
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    swapped = SwappedGeometryPredictor(tmp_path / "model", dataset, 4, max_new_tokens=3, options_only="texts")
    own = UniGRAnswerPredictor(tmp_path / "model", 4, max_new_tokens=3, options_only="texts")
    assert [swapped.donors[sample_id] for sample_id in dataset.sample_ids()] == [2, 2, 0]
    sample = dataset[0]
    with pytest.raises(ValueError, match="dsr_bench/test/0: its donor dsr_bench/test/2 has the video grid"):
        swapped.llm_inputs(sample)
    noise = np.random.default_rng(0).integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
    write_video(clip_b, noise, fps=10.0)  # clip_a's size, other content
    inputs, _ = swapped.llm_inputs(sample)
    own_inputs, _ = own.llm_inputs(sample)
    donor_inputs, _ = own.llm_inputs(dataset[2])
    assert torch.equal(inputs["geometry_frames"][0], donor_inputs["geometry_frames"][0])
    assert not torch.equal(inputs["geometry_frames"][0], own_inputs["geometry_frames"][0])
    for key in ("input_ids", "pixel_values_videos", "video_grid_thw", "question_mask"):  # the rest is the sample's
        assert torch.equal(inputs[key], own_inputs[key])
    _, answer = swapped.predict(sample)
    assert answer in {option[4:] for option in options}
    from scripts import inspect_gsm

    spread = inspect_gsm.main(
        ["--model", str(tmp_path / "model"), "--data-root", str(tmp_path / "dsr"), "--samples", "3"]
    )
    assert spread["samples"] == 3 and spread["norm"] > 0 and spread["sample_spread"] > 0  # clip_b's tokens differ


def test_token_spread_measures_how_the_appended_tokens_differ_between_queries_and_samples() -> None:
    from scripts.inspect_gsm import token_spread

    same = torch.ones(3, 2, 4)  # every sample and query the same token, norm 2
    assert token_spread(same) == {
        "norm": 2.0,
        "query_spread": 0.0,
        "sample_spread": 0.0,
        "relative_query_spread": 0.0,
        "relative_sample_spread": 0.0,
    }
    varied = same.clone()
    varied[0] += 1.0  # the first sample differs
    assert token_spread(varied)["sample_spread"] > 0 and token_spread(varied)["query_spread"] == 0.0


@pytest.mark.parametrize("center", [False, True])
def test_centred_pi3_features_keep_only_what_tells_the_samples_patches_apart(
    center: bool, gsm_model, pi3_checkpoint: Path, monkeypatch
) -> None:
    from model.encoders import geometry

    model, processor = gsm_model
    options = {"pi3_checkpoint": str(pi3_checkpoint), "pi3_config": PI3_TINY, "center_tokens": center, **TINY_GSM}
    encoder = GeometryEncoder.from_options(
        options, model.config.backbone_config.get_text_config().hidden_size, model.config.backbone_config
    )
    encoder.reset_new_parameters(0.02)
    seen = []
    original = geometry.group_like_qwen
    monkeypatch.setattr(
        geometry, "group_like_qwen", lambda tokens, *args: seen.append(tokens) or original(tokens, *args)
    )
    (frames,) = SampleCollator.for_model(model, processor)([_video(0)])["geometry_frames"]
    with torch.no_grad():
        encoder.geometry_tokens(frames)
    (patches,) = seen
    channel_means = patches.mean(dim=(0, 1, 2)).abs().max()
    assert channel_means < 1e-5 if center else channel_means > 1e-2
    # the Q-Formers' attention starts from PyTorch's Xavier init (std 0.02 gives near-uniform attention)
    in_proj = encoder.geometry_qformer.layers[0].cross_attention.in_proj_weight.detach()
    xavier = (2.0 / sum(in_proj.shape)) ** 0.5
    assert abs(float(in_proj.std()) - xavier) < 0.2 * xavier


@pytest.mark.parametrize("fixture", ["positioned_gsm_model", "word_matching_gsm_model"])
def test_a_batch_of_padded_questions_selects_what_each_sample_selects_alone(fixture: str, request) -> None:
    """``select_batch`` (the GSM probe's batched path) reads only each question's real tokens: padding changes nothing,
    and its attention over the geometry tokens is a distribution per query."""
    torch.manual_seed(0)
    model = request.getfixturevalue(fixture)[0]
    encoder = model.input_assembly.encoders["geometry"]
    width = model.config.backbone_config.get_text_config().hidden_size
    questions = [torch.randn(5, width), torch.randn(3, width)]
    geometry = torch.randn(2, 12, width)
    codes = encoder.token_codes([2, 4, 6], seconds_per_slot=0.5)
    padded = torch.zeros(2, 5, width)
    padded[0], padded[1, :3] = questions[0], questions[1]
    padded[1, 3:] = 100.0  # padding that would change the answer if it were read
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with torch.no_grad():
        tokens, attention = encoder.select_batch(padded, geometry, codes, mask)
        for sample, question in enumerate(questions):
            torch.testing.assert_close(tokens[sample], encoder.select(question, geometry[sample], codes))
    assert tokens.shape == (2, NUM_QUERIES, width) and attention.shape == (2, NUM_QUERIES, 12)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, NUM_QUERIES))


def test_a_new_gsm_starts_from_a_gsm_checkpoint_and_its_saved_model_loads_without_it(
    tiny_parts, pi3_checkpoint, tmp_path
) -> None:
    """``gsm_checkpoint`` (what ``scripts/probe_gsm.py --save`` writes) sets every GSM weight of a newly added GSM; the
    saved UniGR model then brings its own weights, so it loads with the file gone; a GSM of other sizes is refused."""
    options = dict(pi3_checkpoint=str(pi3_checkpoint), pi3_config=PI3_TINY)
    trained = _gsm_model(tiny_parts["backbone"], **options)[0].input_assembly.encoders["geometry"]
    state = {name: torch.randn_like(tensor) for name, tensor in trained.gsm_state_dict().items()}
    checkpoint = tmp_path / "gsm.safetensors"
    save_file(state, str(checkpoint))
    model, processor = _gsm_model(tiny_parts["backbone"], **options, gsm_checkpoint=str(checkpoint))
    started = model.input_assembly.encoders["geometry"]
    for name, tensor in started.gsm_state_dict().items():
        torch.testing.assert_close(tensor, state[name], msg=name)
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    checkpoint.rename(tmp_path / "gone.safetensors")
    loaded, _ = load_unigr(tmp_path / "saved")
    for name, tensor in loaded.input_assembly.encoders["geometry"].gsm_state_dict().items():
        torch.testing.assert_close(tensor, state[name], msg=name)
    save_file({name: tensor for name, tensor in state.items() if name != "queries"}, str(checkpoint))
    with pytest.raises(ValueError, match="missing \\['queries'\\]"):
        _gsm_model(tiny_parts["backbone"], **options, gsm_checkpoint=str(checkpoint))


def test_an_imposed_selection_reads_only_the_selected_geometry_tokens(positioned_gsm_model) -> None:
    """With ``selection`` (the GSM probe's ``--oracle-selection``) Q-Former 2's last layer reads the tokens it is given:
    changing any other geometry token changes nothing, changing a selected one changes the output."""
    torch.manual_seed(0)
    encoder = positioned_gsm_model[0].input_assembly.encoders["geometry"]
    assert len(encoder.geometry_qformer.layers) == 1  # the imposed layer is the only one: nothing else reads
    width = positioned_gsm_model[0].config.backbone_config.get_text_config().hidden_size
    question, geometry = torch.randn(1, 5, width), torch.randn(1, 12, width)
    codes = encoder.token_codes([2, 4, 6], seconds_per_slot=0.5)
    selection = torch.zeros(1, 12)
    selection[0, [3, 7]] = 0.5
    others, chosen = geometry.clone(), geometry.clone()
    others[0, [0, 5, 11]] += 3.0
    chosen[0, 7] += 3.0
    with torch.no_grad():
        tokens, attention = encoder.select_batch(question, geometry, codes, None, selection)
        torch.testing.assert_close(encoder.select_batch(question, others, codes, None, selection)[0], tokens)
        assert not torch.allclose(encoder.select_batch(question, chosen, codes, None, selection)[0], tokens, atol=1e-4)
    torch.testing.assert_close(attention, selection[:, None].expand(-1, NUM_QUERIES, -1))


def test_appearance_keys_change_where_q_former_2_looks_but_not_what_it_reads(appearance_gsm_model) -> None:
    """With ``appearance_keys`` the video tokens steer Q-Former 2's attention but are never passed on: over geometry
    tokens that are all alike, other video tokens move the attention and leave the output as it is; over distinct
    geometry tokens they change the output; without them the GSM refuses to select."""
    torch.manual_seed(0)
    encoder = appearance_gsm_model[0].input_assembly.encoders["geometry"]
    width = appearance_gsm_model[0].config.backbone_config.get_text_config().hidden_size
    question = torch.randn(1, 5, width)
    looks, other_looks = torch.randn(1, 12, width), torch.randn(1, 12, width)
    alike, distinct = torch.randn(1, 1, width).expand(1, 12, width), torch.randn(1, 12, width)
    codes = torch.zeros(12, encoder.queries.shape[1])  # no place or time: the tokens differ only in their looks
    with torch.no_grad():
        tokens, attention = encoder.select_batch(question, alike, codes, appearance=looks)
        other_tokens, other_attention = encoder.select_batch(question, alike, codes, appearance=other_looks)
        torch.testing.assert_close(other_tokens, tokens)
        assert (other_attention - attention).abs().max() > 1e-3
        steered = encoder.select_batch(question, distinct, codes, appearance=looks)[0]
        assert not torch.allclose(encoder.select_batch(question, distinct, codes, appearance=other_looks)[0], steered)
        with pytest.raises(ValueError, match="appearance_keys needs the video tokens"):
            encoder.select_batch(question, distinct, codes)


def test_question_times_code_the_named_time_where_the_geometry_codes_its_slots(question_times_gsm_model) -> None:
    """The collator marks the tokens of "0.75 s" with 0.75 (and nothing else: not "4.9 m"), the same in training and
    inference; with ``question_times`` those tokens' codes carry it on the time axis, the appended tokens follow the
    named time, and a GSM without the batch's times refuses to select."""
    model, processor = question_times_gsm_model
    question = "How far away is the red square at 0.75 s? (A) 4.9 m (B) 1.2 m"
    sample = _video(0, question=question)
    train = SampleCollator.for_model(model, processor)([sample])
    infer = SampleCollator.for_model(model, processor, inference=True)([sample])
    for batch in (train, infer):
        seconds = batch["question_seconds"][0]
        named = seconds[~seconds.isnan()]
        assert len(named) and (named == 0.75).all() and batch["question_mask"][0][~seconds.isnan()].all()
        marked = processor.tokenizer.decode(batch["input_ids"][0][~seconds.isnan()])
        assert "".join(marked.split()) == "0.75s"
    encoder = model.input_assembly.encoders["geometry"]
    codes = encoder.question_codes(4, torch.tensor([[math.nan, 0.75, 0.75, math.nan]]))[0]
    plain = encoder.question_codes(4)
    torch.testing.assert_close(codes[[0, 3]], plain[[0, 3]])
    slot = encoder.token_codes([2, 2, 2], seconds_per_slot=0.75)[-1]  # the last slot starts at 0.75 s
    third = codes.shape[1] // 6 * 4  # the time axis's block
    torch.testing.assert_close(codes[1, third:], slot[third:])
    assert not torch.allclose(codes[1, third:], plain[1, third:])
    later = dataclasses.replace(
        sample,
        conversation=[{**sample.conversation[0], "content": question.replace("0.75", "2.5")}, sample.conversation[1]],
    )
    tokens = _appended(model, train, _assemble(model, train))[0]
    batch = SampleCollator.for_model(model, processor)([later])
    assert not torch.allclose(_appended(model, batch, _assemble(model, batch))[0], tokens)
    del train["question_seconds"]
    with pytest.raises(ValueError, match="question_times needs the batch's question_seconds"):
        _assemble(model, train)


def test_q_former_cross_attention_is_torchs_and_top_k_reads_only_the_best_matched_entries() -> None:
    """The Q-Former's cross-attention equals ``nn.MultiheadAttention`` on its weights; with ``top_k`` every query and
    head reads only its ``top_k`` best-matched entries (``top_k=1``: exactly that entry's value), while the returned
    weights stay the full attention."""
    torch.manual_seed(0)
    layer = QFormerLayer(16, num_heads=2).eval()
    queries, memory = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    with torch.no_grad():
        read, weights = layer.cross_attend(queries, memory, None, None, None)
        expected, expected_weights = layer.cross_attention(queries, memory, memory)
        torch.testing.assert_close(read, expected)
        torch.testing.assert_close(weights, expected_weights)
        layer.top_k = 7
        torch.testing.assert_close(layer.cross_attend(queries, memory, None, None, None)[0], read)
        layer.top_k = 1
        top_read, top_weights = layer.cross_attend(queries, memory, None, None, None)
        torch.testing.assert_close(top_weights, weights)
        attend = layer.cross_attention
        q, k, v = (
            memory_or_queries @ attend.in_proj_weight[i * 16 : (i + 1) * 16].T
            + attend.in_proj_bias[i * 16 : (i + 1) * 16]
            for i, memory_or_queries in enumerate((queries, memory, memory))
        )
        by_hand = torch.zeros(2, 3, 16)
        for head in range(2):
            part = slice(8 * head, 8 * head + 8)
            best = (q[..., part] @ k[..., part].transpose(1, 2)).argmax(-1)  # (2, 3)
            by_hand[..., part] = torch.gather(v[..., part], 1, best[..., None].expand(-1, -1, 8))
        torch.testing.assert_close(top_read, attend.out_proj(by_hand))
    with pytest.raises(ValueError, match="top_k must be positive"):
        QFormerLayer(16, num_heads=2, top_k=0)


def test_word_matching_scores_each_geometry_token_by_its_best_matching_real_word() -> None:
    """Per head, a geometry token's score is its best scaled dot product with a real question token (padding is never
    read), summed over heads; changing the word that matches a token best changes that token's score."""
    torch.manual_seed(0)
    matching = WordMatching(16, num_heads=2).eval()
    question, tokens = torch.randn(1, 4, 16), torch.randn(1, 6, 16)
    mask = torch.tensor([[True, True, True, False]])
    with torch.no_grad():
        prior = matching(question, tokens, mask)
        words, keys = matching.word_proj(question[:, :3]), matching.token_proj(tokens)
        by_hand = sum(
            (words[0, :, part] @ keys[0, :, part].T / math.sqrt(8)).amax(0) for part in (slice(0, 8), slice(8, 16))
        )
        torch.testing.assert_close(prior[0], by_hand)
        padded = question.clone()
        padded[:, 3] = 100.0
        torch.testing.assert_close(matching(padded, tokens, mask), prior)
        assert not torch.allclose(matching(padded, tokens), prior)
        changed = question.clone()
        changed[:, 0] = torch.randn(16)
        assert not torch.allclose(matching(changed, tokens, mask), prior)
    assert prior.shape == (1, 6)
    with pytest.raises(ValueError, match="multiple of its 3 heads"):
        WordMatching(16, num_heads=3)


def test_a_logit_bias_steers_every_query_of_q_former_2(word_matching_gsm_model) -> None:
    """A large logit bias on one entry makes the cross-attention read exactly that entry's value; with
    ``word_matching`` the GSM's selection follows the question's words even where its learned queries read the same
    question (only the words matter to the prior)."""
    torch.manual_seed(0)
    layer = QFormerLayer(16, num_heads=2).eval()
    queries, memory = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    bias = torch.zeros(2, 7)
    bias[:, 4] = 1e4
    with torch.no_grad():
        read, weights = layer.cross_attend(queries, memory, None, None, None, bias)
        attend = layer.cross_attention
        value = memory[:, 4] @ attend.in_proj_weight[32:].T + attend.in_proj_bias[32:]
        torch.testing.assert_close(read, attend.out_proj(value)[:, None].expand(-1, 3, -1))
        torch.testing.assert_close(weights[..., 4], torch.ones(2, 3))
    encoder = copy.deepcopy(word_matching_gsm_model[0].input_assembly.encoders["geometry"])
    width = word_matching_gsm_model[0].config.backbone_config.get_text_config().hidden_size
    question, geometry = torch.randn(1, 5, width), torch.randn(1, 12, width)
    codes = encoder.token_codes([2, 4, 6], seconds_per_slot=0.5)
    with torch.no_grad():
        _, attention = encoder.select_batch(question, geometry, codes)
        encoder.word_matching.token_proj[1].weight.zero_()  # a prior that is the same for every token: no steering
        encoder.word_matching.token_proj[1].bias.zero_()
        _, unsteered = encoder.select_batch(question, geometry, codes)
    assert (attention - unsteered).abs().max() > 1e-3
