"""Grounding over 3D object proposals: ``<OBJ###>`` ids in text, 3D box IoU, and the ``[GRD]`` proposal head."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model.heads.base import HEADS
from model.heads.proposal_grounding import (
    GroundingHeadConfig,
    ProposalGroundingHead,
    multi_targets,
    select_proposals,
    single_targets,
    text_read,
)
from model.visual_tokens import VisualTokens
from utils.scene3d.boxes import box_iou_3d, points_in_boxes
from utils.scene3d.object_ids import (
    ObjectIdMentions,
    boxes_for_ids,
    boxes_from_text,
    format_object_id,
    parse_object_ids,
)
from utils.scene3d.proposal_views import APPEARANCE_DIM, ProposalViews

# --- object ids -------------------------------------------------------------------------------------


def test_object_ids_are_zero_padded_to_three_digits_and_grow_past_999() -> None:
    assert [format_object_id(i) for i in (0, 7, 12, 999, 1000, 12345)] == [
        "<OBJ000>",
        "<OBJ007>",
        "<OBJ012>",
        "<OBJ999>",
        "<OBJ1000>",
        "<OBJ12345>",
    ]
    assert format_object_id(np.int64(5)) == "<OBJ005>"


@pytest.mark.parametrize("bad", [-1, 1.0, "3", True])
def test_formatting_refuses_what_is_not_a_proposal_index(bad) -> None:
    with pytest.raises(ValueError, match="proposal index"):
        format_object_id(bad)


def test_random_id_lists_round_trip_through_text_each_id_once_in_first_mention_order() -> None:
    rng = np.random.default_rng(0)
    fillers = ["", " ", "the chair ", ", and ", "\n", "OBJ 4 "]
    for _ in range(300):
        ids = rng.integers(0, 1500, size=rng.integers(0, 8)).tolist()
        ids += rng.choice(ids, size=len(ids) // 2).tolist() if ids else []  # repeats
        text = "".join(f"{fillers[rng.integers(len(fillers))]}{format_object_id(i)}" for i in ids)
        expected = tuple(dict.fromkeys(ids))
        assert parse_object_ids(text) == ObjectIdMentions(expected)
        assert parse_object_ids("".join(format_object_id(i) for i in expected)).ids == expected


def test_lowercase_unpadded_and_spaced_ids_parse_and_format_back_canonically() -> None:
    text = "It is <obj12>, next to < OBJ 3 > and <Obj0007>; again <OBJ012>."
    mentions = parse_object_ids(text)
    assert mentions.ids == (12, 3, 7)
    assert "".join(format_object_id(i) for i in mentions.ids) == "<OBJ012><OBJ003><OBJ007>"


@pytest.mark.parametrize("text", ["", "no objects here", "<OBJ>", "OBJ012", "<OBJx12>", "<OBJ-3>", "<OBJ1 2>"])
def test_text_without_a_well_formed_id_mentions_nothing(text: str) -> None:
    assert parse_object_ids(text, 10) == ObjectIdMentions((), ())


def test_ids_beyond_the_proposals_are_reported_not_raised() -> None:
    mentions = parse_object_ids("<OBJ001> <OBJ050> <OBJ009> <OBJ010> <OBJ050>", num_proposals=10)
    assert mentions == ObjectIdMentions(ids=(1, 9), out_of_range=(50, 10))


def test_named_proposals_map_to_their_boxes_in_order_for_numpy_and_torch() -> None:
    proposals = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    boxes, mentions = boxes_from_text("<OBJ003> then <obj1> and <OBJ009>", proposals)
    assert isinstance(boxes, np.ndarray)
    np.testing.assert_array_equal(boxes, proposals[[3, 1]])
    assert mentions.out_of_range == (9,)
    torch_boxes, _ = boxes_from_text("<OBJ002>", torch.from_numpy(proposals))
    assert torch.equal(torch_boxes, torch.from_numpy(proposals[[2]]))
    assert boxes_for_ids([], proposals).shape == (0, 6)


def test_boxes_for_ids_refuses_ids_with_no_proposal_and_malformed_proposals() -> None:
    proposals = np.zeros((3, 6))
    with pytest.raises(ValueError, match=r"\[3\] name no proposal"):
        boxes_for_ids([0, 3], proposals)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        boxes_for_ids([0], np.zeros((3, 4)))


# --- 3D box IoU -------------------------------------------------------------------------------------


def box(cx: float, cy: float, cz: float, sx: float, sy: float, sz: float) -> list[float]:
    return [float(v) for v in (cx, cy, cz, sx, sy, sz)]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (box(0, 0, 0, 2, 2, 2), box(0, 0, 0, 2, 2, 2), 1.0),  # identical
        (box(0, 0, 0, 1, 1, 1), box(5, 0, 0, 1, 1, 1), 0.0),  # disjoint
        (box(0, 0, 0, 1, 1, 1), box(0, 0, 0, 2, 2, 2), 1 / 8),  # nested: 1 / 8
        (box(0, 0, 0, 2, 2, 2), box(2, 0, 0, 2, 2, 2), 0.0),  # touching faces
        (box(0, 0, 0, 2, 2, 2), box(2, 2, 2, 2, 2, 2), 0.0),  # touching corners
        (box(0, 0, 0, 2, 2, 2), box(1, 0, 0, 2, 2, 2), 4 / 12),  # half overlap in x: 4 / (8 + 8 - 4)
        (box(0, 0, 0, 2, 4, 1), box(0.5, 1, 0, 1, 2, 1), 2 / 8),  # inside, off-centre: 2 / 8
        (box(1, 1, 1, 2, 2, 2), box(1.5, 1.5, 1.5, 2, 2, 2), 1.5**3 / (16 - 1.5**3)),  # shifted on every axis
    ],
)
def test_box_iou_matches_hand_computed_cases(a, b, expected) -> None:
    iou = box_iou_3d(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))
    assert iou.shape == (1, 1)
    assert iou.item() == pytest.approx(expected, abs=1e-12)
    assert box_iou_3d(torch.tensor([b]), torch.tensor([a])).item() == pytest.approx(expected, abs=1e-6)


def test_box_iou_is_pairwise_and_keeps_numpy_as_numpy() -> None:
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(size=(5, 3)), rng.uniform(0.1, 2, size=(5, 3))], axis=1)
    b = np.concatenate([rng.normal(size=(7, 3)), rng.uniform(0.1, 2, size=(7, 3))], axis=1)
    pairwise = box_iou_3d(a, b)
    assert isinstance(pairwise, np.ndarray) and pairwise.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            assert pairwise[i, j] == pytest.approx(box_iou_3d(a[i : i + 1], b[j : j + 1])[0, 0])
    assert ((pairwise >= 0) & (pairwise <= 1)).all()
    np.testing.assert_allclose(np.diag(box_iou_3d(a, a)), 1.0)
    assert box_iou_3d(np.zeros((0, 6)), b).shape == (0, 7)


def test_zero_volume_boxes_give_zero_iou_and_negative_sizes_are_refused() -> None:
    flat = torch.tensor([box(0, 0, 0, 1, 1, 0)])
    assert box_iou_3d(flat, flat).item() == 0.0
    with pytest.raises(ValueError, match="b has boxes of negative size"):
        box_iou_3d(flat, torch.tensor([box(0, 0, 0, 1, -1, 1)]))
    with pytest.raises(ValueError, match=r"a must be \(N, 6\)"):
        box_iou_3d(torch.zeros(2, 4), flat)


def test_points_on_a_face_are_inside_and_nan_points_are_in_no_box() -> None:
    boxes = torch.tensor([box(0, 0, 0, 2, 2, 2), box(3, 0, 0, 1, 1, 1)])
    points = torch.tensor([[1.0, 0, 0], [3.4, 0.1, -0.2], [1.01, 0, 0], [float("nan"), 0, 0]])
    inside = points_in_boxes(points, boxes)
    assert inside.tolist() == [[True, False, False, False], [False, True, False, False]]


# --- the [GRD] proposal head ------------------------------------------------------------------------

HIDDEN = 16
VIDEO_ID, IMAGE_ID, GRD_ID, TEXT_ID = 3, 4, 7, 10
TOKENS = VisualTokens(video_token_id=VIDEO_ID, image_token_id=IMAGE_ID, spatial_merge_size=2, temporal_patch_size=2)
GRID = (1, 8, 8)  # one slot of 4 x 4 merged tokens
NUM_TOKENS = 16
NUM_PROPOSALS = 4
PROPOSALS = torch.tensor([box(2.0 * k, 0, 0, 1, 1, 1) for k in range(NUM_PROPOSALS)])
FAR_BOX = box(50, 50, 50, 1, 1, 1)


def make_head(seed: int = 0, **options) -> ProposalGroundingHead:
    torch.manual_seed(seed)
    head = ProposalGroundingHead(GroundingHeadConfig.from_dict({"embed_dim": 32, **options}), HIDDEN, GRD_ID, TOKENS)
    head.reset_new_parameters(std=0.2)
    return head


def token_layout() -> tuple[ProposalViews, torch.Tensor]:
    """``(views, proposal of each token (16,), -1 for none)``: tokens 0-11 lie three in each proposal (all their
    pixels in it), 12-15 in none; every proposal's appearance is zero."""
    owner = torch.tensor([k for k in range(NUM_PROPOSALS) for _ in range(3)] + [-1] * 4)
    weights = (owner[None] == torch.arange(NUM_PROPOSALS)[:, None]).float()  # (P, N)
    return ProposalViews(weights, torch.zeros(NUM_PROPOSALS, APPEARANCE_DIM)), owner


def toy_batch(rng: np.random.Generator, classes: torch.Tensor, batch_size: int, multi: bool):
    """A batch where each proposal shows one of ``C - 1`` object classes (its visual tokens carry the class vector
    plus noise) and each ``[GRD]`` state is the vector of the class asked for, plus the last class vector when
    that class is shown nowhere (the LLM's state can know: it attends over the whole scene; the head's "no
    target" candidate is one learned feature, so only the query can tell it apart). The text token before
    ``[GRD]`` (the description's end) carries the same vector.

    Single: the proposals show distinct classes; the asked class is shown once (its proposal is the target, the
    ground truth a jittered copy of its box) or not at all (ground truth far away: no target). Multi: classes
    repeat; every proposal showing the asked class is a target (zero to four).

    Returns ``(last_hidden (B, L, D), input_ids (B, L), batch, expected proposal ids per sample)``.
    """
    num_classes, absent_vector = len(classes) - 1, classes[-1]
    views, owner = token_layout()
    input_ids = torch.tensor([TEXT_ID] + [VIDEO_ID] * NUM_TOKENS + [TEXT_ID, GRD_ID, TEXT_ID]).repeat(batch_size, 1)
    hidden = torch.from_numpy(rng.normal(size=(*input_ids.shape, HIDDEN))).float()
    gt_boxes, expected = [], []
    for i in range(batch_size):
        shown = rng.integers(num_classes, size=NUM_PROPOSALS) if multi else rng.permutation(num_classes)[:4]
        asked = int(rng.integers(num_classes))
        tokens = 1 + torch.arange(NUM_TOKENS)
        has_owner = owner >= 0
        hidden[i, tokens[has_owner]] = (
            classes[torch.from_numpy(shown)[owner[has_owner]]] + 0.1 * hidden[i, tokens[has_owner]]
        )
        targets = [k for k in range(NUM_PROPOSALS) if shown[k] == asked]
        query = classes[asked] + (0 if targets else absent_vector)
        for position in (1 + NUM_TOKENS, 1 + NUM_TOKENS + 1):  # the description's last token and [GRD]
            hidden[i, position] = query + 0.1 * hidden[i, position]
        jitter = torch.tensor([0.1, -0.1, 0.05, 0.1, 0.0, -0.1])
        boxes = PROPOSALS[targets] + jitter if targets else torch.tensor([FAR_BOX] if not multi else []).view(-1, 6)
        gt_boxes.append([boxes])
        expected.append(targets)
    batch = {
        "video_grid_thw": torch.tensor([GRID] * batch_size),
        "proposals": [PROPOSALS.clone() for _ in range(batch_size)],
        "proposal_views": [views for _ in range(batch_size)],
        "gt_boxes_3d": gt_boxes,
        "grounding_multi": [multi] * batch_size,
    }
    return hidden, input_ids, batch, expected


def train(head: ProposalGroundingHead, multi: bool, steps: int, seed: int = 0) -> tuple[list[float], float]:
    """Adam on fresh toy batches; ``(losses per step, accuracy on a held-out batch)``."""
    rng = np.random.default_rng(seed)
    classes = torch.from_numpy(rng.normal(size=(7, HIDDEN))).float()
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    term = "grd_bce" if multi else "grd_ce"
    history = []
    for _ in range(steps):
        hidden, input_ids, batch, _ = toy_batch(rng, classes, 16, multi)
        outputs = head.predict(hidden, input_ids, batch)
        loss, _ = head.losses(outputs, batch, head.counts(batch))[term]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    hidden, input_ids, batch, expected = toy_batch(rng, classes, 64, multi)
    with torch.no_grad():
        predicted = head.predict(hidden, input_ids, batch)["pred_proposal_ids"]
    correct = [ids[0].tolist() == want for ids, want in zip(predicted, expected)]
    return history, sum(correct) / len(correct)


def test_the_head_registers_under_grounding_and_builds_only_when_enabled() -> None:
    assert HEADS["grounding"] is ProposalGroundingHead
    model_config = SimpleNamespace(
        grd_token_id=GRD_ID,
        backbone_config={
            "video_token_id": VIDEO_ID,
            "image_token_id": IMAGE_ID,
            "vision_config": {"spatial_merge_size": 2, "temporal_patch_size": 2},
        },
    )
    assert ProposalGroundingHead.from_config(None, HIDDEN, model_config) is None
    assert ProposalGroundingHead.from_config({"enabled": False}, HIDDEN, model_config) is None
    head = ProposalGroundingHead.from_config({"embed_dim": 8}, HIDDEN, model_config)
    assert head.grd_token_id == GRD_ID and head.visual_tokens == TOKENS and head.config.embed_dim == 8
    with pytest.raises(ValueError, match="grd_token_id"):
        ProposalGroundingHead.from_config({}, HIDDEN, SimpleNamespace(backbone_config={}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "both"}, "grounding.mode"),
        ({"similarity": "l2"}, "grounding.similarity"),
        ({"threshold": 0.0}, "grounding.threshold"),
        ({"iou_threshold": 1.5}, "grounding.iou_threshold"),
        ({"temperature": 1.0}, "unknown grounding head options"),
        ({"situation": True, "query_reads_text": False}, "grounding.situation reads the text through the"),
        ({"text_read_scale": 0.0}, "grounding.text_read_scale"),
    ],
)
def test_bad_grounding_options_are_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroundingHeadConfig.from_dict(options)


def test_config_round_trips_through_a_dict() -> None:
    config = GroundingHeadConfig.from_dict({"mode": "multi", "threshold": 0.4, "similarity": "dot"})
    assert GroundingHeadConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_logits_and_predictions_have_one_row_per_grd_and_a_no_target_column(similarity: str) -> None:
    head = make_head(similarity=similarity)
    rng = np.random.default_rng(0)
    hidden, input_ids, batch, _ = toy_batch(rng, torch.randn(7, HIDDEN), 3, multi=False)
    input_ids[1, -1] = GRD_ID  # sample 1 asks twice
    input_ids[2, -2] = TEXT_ID  # sample 2 asks nothing
    batch["proposals"][1] = PROPOSALS[:2]
    batch["proposal_views"][1] = ProposalViews(
        batch["proposal_views"][1].token_weights[:2], batch["proposal_views"][1].appearance[:2]
    )
    outputs = head.predict(hidden, input_ids, batch)
    assert [tuple(x.shape) for x in outputs["grounding_logits"]] == [(1, 5), (2, 3), (0, 5)]
    assert [len(ids) for ids in outputs["pred_proposal_ids"]] == [1, 2, 0]
    for ids, boxes, proposals in zip(outputs["pred_proposal_ids"], outputs["pred_boxes_3d"], batch["proposals"]):
        for query_ids, query_boxes in zip(ids, boxes):
            assert query_boxes.shape == (len(query_ids), 6)
            assert torch.equal(query_boxes, proposals[query_ids])
    batch["gt_boxes_3d"] = [[PROPOSALS[:1]], [PROPOSALS[1:2], PROPOSALS[:0]], None]
    counts = head.counts(batch)
    assert counts == {"num_grounding_single_in_batch": 3, "num_grounding_multi_in_batch": 0}
    losses = head.losses(outputs, batch, counts)
    assert set(losses) == {"grd_ce"} and losses["grd_ce"][0].shape == () and losses["grd_ce"][1] == 1.0


def test_a_batch_without_grd_predicts_nothing() -> None:
    head = make_head()
    hidden, input_ids, batch, _ = toy_batch(np.random.default_rng(0), torch.randn(7, HIDDEN), 2, multi=False)
    input_ids[input_ids == GRD_ID] = TEXT_ID
    assert head.predict(hidden, input_ids, batch) is None


def test_grd_without_proposals_or_with_misaligned_proposal_views_is_an_error_naming_the_sample() -> None:
    head = make_head()
    hidden, input_ids, batch, _ = toy_batch(np.random.default_rng(0), torch.randn(7, HIDDEN), 2, multi=False)
    with pytest.raises(ValueError, match="sample 1 of the batch has \\[GRD\\] but no proposals"):
        head.predict(hidden, input_ids, {**batch, "proposals": [PROPOSALS, None]})
    with pytest.raises(ValueError, match="no proposal_views"):
        head.predict(hidden, input_ids, {key: value for key, value in batch.items() if key != "proposal_views"})
    views = batch["proposal_views"][0]
    short = ProposalViews(views.token_weights[:, 1:], views.appearance)
    with pytest.raises(
        ValueError, match="sample 0: proposal_views has token weights \\(4, 15\\) for 4 proposals and 16"
    ):
        head.predict(hidden, input_ids, {**batch, "proposal_views": [short] * 2})


def test_proposal_features_pool_tokens_by_their_share_of_pixels_in_each_box() -> None:
    head = make_head()
    visual = torch.randn(NUM_TOKENS, HIDDEN)
    weights = torch.zeros(2, NUM_TOKENS)
    weights[0, :3] = torch.tensor([1.0, 0.5, 0.5])  # half of tokens 1 and 2 lie in box 0
    appearance = torch.rand(2, APPEARANCE_DIM)
    boxes = PROPOSALS[:2]
    features = head.proposal_features(visual, weights, appearance, boxes)
    pooled = torch.stack([(visual[0] + 0.5 * visual[1] + 0.5 * visual[2]) / 2, torch.zeros(HIDDEN)])  # box 1: none
    parts = [head.visual_proj(pooled), head.appearance_embed(appearance), head.box_embed(boxes)]
    torch.testing.assert_close(features, head.proposal_mlp(torch.cat(parts, dim=-1)))


def test_the_query_reads_the_prompt_text_only_when_configured() -> None:
    hidden, input_ids, batch, _ = toy_batch(np.random.default_rng(0), torch.randn(7, HIDDEN), 1, multi=False)
    changed = hidden.clone()
    changed[0, 1 + NUM_TOKENS] += 1.0  # the text token after the visual tokens
    for reads_text in (True, False):
        head = make_head(query_reads_text=reads_text)
        with torch.no_grad():
            before = head.predict(hidden, input_ids, batch)["grounding_logits"][0]
            after = head.predict(changed, input_ids, batch)["grounding_logits"][0]
        assert torch.allclose(before, after) != reads_text


def test_a_class_name_the_question_uses_raises_its_proposals_from_the_first_step() -> None:
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(64, HIDDEN)
    hidden, input_ids, batch, _ = toy_batch(np.random.default_rng(0), torch.randn(7, HIDDEN), 1, multi=False)
    names = torch.tensor([[40, -1], [41, 42], [43, -1], [40, 44]])  # proposals 0 and 3 share word 40
    batch = {**batch, "input_embeddings": embeddings, "proposal_label_ids": [names]}
    head = make_head()
    logits = {}
    for word in (40, 43):
        asked = input_ids.clone()
        asked[0, 1 + NUM_TOKENS] = word  # the question's word before [GRD]
        with torch.no_grad():
            logits[word] = head.predict(hidden, asked, batch)["grounding_logits"][0][0]
    change = logits[40] - logits[43]  # the same states: only the name match differs
    assert change[0] > 0 and change[3] > 0 and change[2] < 0 and change[-1] == 0
    without = make_head(label_match=False)
    assert without.label_proj is None and without.predict(hidden, input_ids, batch)["grounding_logits"][0].shape == (
        1,
        5,
    )


@pytest.mark.parametrize("scale", [None, 3.0])
def test_a_scaled_cosine_text_read_cannot_collapse_onto_one_token_however_large_its_weights(scale) -> None:
    torch.manual_seed(0)
    attention = torch.nn.ModuleDict(
        {"query": torch.nn.Linear(HIDDEN, 32), "key": torch.nn.Linear(HIDDEN, 32), "value": torch.nn.Linear(HIDDEN, 32)}
    )
    with torch.no_grad():
        for name in ("query", "key"):
            attention[name].weight.mul_(1000.0)  # what Adam at a high learning rate does to them over a long run
    hidden, text = torch.randn(4, HIDDEN), torch.randn(20, HIDDEN)
    weights, _ = text_read(attention, hidden, text, torch.ones(4, 20, dtype=torch.bool), scale=scale)
    if scale is None:
        assert weights.max(dim=1).values.min() > 0.99  # one token takes it all: the softmax no longer learns
    else:
        bound = math.exp(scale) / (math.exp(scale) + 19 * math.exp(-scale))
        assert weights.max() <= bound + 1e-6 < 0.96


def colour_batch(rng: np.random.Generator, embeddings: torch.nn.Embedding, size: int) -> tuple:
    """Samples whose question is one colour word (ids 50-53) and whose proposals show the four colours in a random
    order (RGB means in the appearance statistics, the rest zero); the visual tokens and every hidden state carry
    noise only, so nothing but the words can say which proposal is asked for. Returns ``(hidden, input_ids, batch
    with the embeddings, expected proposal per sample)``."""
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    hidden, input_ids, batch, _ = toy_batch(rng, torch.zeros(7, HIDDEN), size, multi=False)
    hidden = torch.from_numpy(rng.normal(size=hidden.shape)).float()
    views, expected, gt_boxes = [], [], []
    for i in range(size):
        order = torch.from_numpy(rng.permutation(4))
        appearance = torch.zeros(NUM_PROPOSALS, APPEARANCE_DIM)
        appearance[:, :3] = colours[order]
        views.append(ProposalViews(batch["proposal_views"][0].token_weights, appearance))
        asked = int(rng.integers(4))
        input_ids[i, 1 + NUM_TOKENS] = 50 + asked
        target = int((order == asked).nonzero()[0, 0])
        expected.append(target)
        gt_boxes.append([PROPOSALS[target : target + 1]])
    batch = {**batch, "proposal_views": views, "gt_boxes_3d": gt_boxes, "input_embeddings": embeddings}
    return hidden, input_ids, batch, expected


@pytest.mark.parametrize("appearance_match", [True, False])
def test_a_colour_word_learns_to_point_at_the_proposal_of_its_colour_only_with_the_appearance_match(
    appearance_match: bool,
) -> None:
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(64, HIDDEN).requires_grad_(False)
    head = make_head(appearance_match=appearance_match, label_match=False)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        hidden, input_ids, batch, _ = colour_batch(rng, embeddings, 16)
        loss, _ = head.losses(head.predict(hidden, input_ids, batch), batch, head.counts(batch))["grd_ce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hidden, input_ids, batch, expected = colour_batch(np.random.default_rng(1), embeddings, 64)
    with torch.no_grad():
        predicted = [int(ids[0][0]) for ids in head.predict(hidden, input_ids, batch)["pred_proposal_ids"]]
    accuracy = np.mean([got == want for got, want in zip(predicted, expected)])
    if appearance_match:
        assert accuracy >= 0.9
        asked = input_ids.clone()
        asked[:, 1 + NUM_TOKENS] = 50 + (asked[:, 1 + NUM_TOKENS] - 50 + 1) % 4  # another colour word
        with torch.no_grad():
            changed = [int(ids[0][0]) for ids in head.predict(hidden, asked, batch)["pred_proposal_ids"]]
        assert np.mean([a != b for a, b in zip(predicted, changed)]) >= 0.9  # the word decides
    else:
        assert accuracy < 0.5  # four colours: nothing else tells them apart


def test_each_grd_of_a_multi_turn_conversation_reads_only_its_own_question() -> None:
    hidden, input_ids, batch, _ = toy_batch(np.random.default_rng(0), torch.randn(7, HIDDEN), 1, multi=False)
    input_ids = torch.cat([input_ids, torch.tensor([[TEXT_ID, TEXT_ID, GRD_ID]])], dim=1)  # a second question
    hidden = torch.cat([hidden, torch.randn(1, 3, HIDDEN)], dim=1)
    head = make_head()
    with torch.no_grad():
        before = head.predict(hidden, input_ids, batch)["grounding_logits"][0]
        first, second = hidden.clone(), hidden.clone()
        first[0, 1 + NUM_TOKENS] += 1.0  # the first question's token
        second[0, -2] += 1.0  # the second question's token
        after_first = head.predict(first, input_ids, batch)["grounding_logits"][0]
        after_second = head.predict(second, input_ids, batch)["grounding_logits"][0]
    assert not torch.allclose(before[0], after_first[0]) and torch.equal(before[1], after_first[1])
    assert torch.equal(before[0], after_second[0]) and not torch.allclose(before[1], after_second[1])


def test_queries_read_the_prompt_after_the_media_and_never_padding_or_answer_tokens() -> None:
    input_ids = torch.tensor(
        [[TEXT_ID, VIDEO_ID, TEXT_ID, TEXT_ID, TEXT_ID, GRD_ID, TEXT_ID], [0, TEXT_ID, TEXT_ID, GRD_ID, 0, 0, 0]]
    )
    layouts = [SimpleNamespace(positions=torch.tensor([1])), None]
    attention_mask = torch.tensor([[1] * 7, [0, 1, 1, 1, 1, 1, 1]])  # row 1: left padding, no media
    labels = torch.tensor([[-100, -100, -100, -100, 5, 5, 5], [-100] * 7])  # row 0: tokens 4- are the answer
    grd = input_ids == GRD_ID
    text = ProposalGroundingHead.text_positions(input_ids, grd, layouts, attention_mask, labels)
    expected = [[False, False, True, True, False, False, False], [False, True, True, False, True, True, True]]
    assert text.tolist() == expected


def test_single_target_is_the_highest_iou_proposal_above_threshold_else_no_target() -> None:
    proposals = torch.tensor([box(0, 0, 0, 2, 2, 2), box(0.5, 0, 0, 2, 2, 2), box(9, 9, 9, 1, 1, 1)])
    gt = [
        torch.tensor([box(0.6, 0, 0, 2, 2, 2)]),
        torch.tensor([FAR_BOX]),
        torch.zeros(0, 6),
        torch.tensor([box(1.5, 0, 0, 2, 2, 2)]),
    ]
    # IoU of the last with proposal 1: overlap 1 x 2 x 2 = 4 -> 4 / 12 = 0.33 (passes 0.25, not 0.5)
    assert single_targets(gt, proposals, 0.25).tolist() == [1, 3, 3, 1]
    assert single_targets(gt, proposals, 0.5).tolist() == [1, 3, 3, 3]
    with pytest.raises(ValueError, match="at most one box"):
        single_targets([torch.tensor([box(0, 0, 0, 1, 1, 1)] * 2)], proposals, 0.25)


def test_multi_targets_mark_each_boxs_best_proposal_and_no_target_only_when_none_matches() -> None:
    proposals = torch.tensor([box(0, 0, 0, 2, 2, 2), box(0.5, 0, 0, 2, 2, 2), box(5, 0, 0, 1, 1, 1)])
    gt = [
        torch.tensor([box(0.6, 0, 0, 2, 2, 2), box(5, 0, 0, 1.1, 1, 1)]),  # two targets
        torch.zeros(0, 6),  # zero targets
        torch.tensor([FAR_BOX]),  # a target no proposal matches
    ]
    labels = multi_targets(gt, proposals, 0.25)
    assert labels.tolist() == [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]]


def test_multi_target_prediction_keeps_proposals_at_the_threshold_unless_no_target_beats_them_all() -> None:
    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    logits = torch.tensor(
        [
            [logit(0.9), logit(0.6), logit(0.4), logit(0.3)],  # two above 0.5
            [logit(0.9), logit(0.6), logit(0.4), logit(0.95)],  # "no target" beats all
            [logit(0.2), logit(0.3), logit(0.1), logit(0.25)],  # none above 0.5
        ]
    )
    assert [ids.tolist() for ids in select_proposals(logits, True, 0.5)] == [[0, 1], [], []]
    assert [ids.tolist() for ids in select_proposals(logits, True, 0.7)] == [[0], [], []]
    assert [ids.tolist() for ids in select_proposals(logits, True, 0.25)][2] == [1]
    assert select_proposals(torch.tensor([[0.3]]), True, 0.5)[0].tolist() == []  # no proposals at all


def test_single_target_prediction_is_the_argmax_and_nothing_when_no_target_wins() -> None:
    logits = torch.tensor([[0.1, 2.0, 0.3, 1.0], [0.1, 2.0, 0.3, 3.0]])
    assert [ids.tolist() for ids in select_proposals(logits, False, 0.5)] == [[1], []]


def test_losses_divide_by_the_global_number_of_queries_of_their_kind() -> None:
    head = make_head()
    hidden, input_ids, batch, _ = toy_batch(np.random.default_rng(0), torch.randn(7, HIDDEN), 4, multi=False)
    batch["grounding_multi"] = [False, True, False, True]
    batch["gt_boxes_3d"][1] = [PROPOSALS[:2]]
    outputs = head.predict(hidden, input_ids, batch)
    local = head.losses(outputs, batch, head.counts(batch))
    assert head.counts(batch) == {"num_grounding_single_in_batch": 2, "num_grounding_multi_in_batch": 2}
    doubled = head.losses(outputs, batch, {"num_grounding_single_in_batch": 4, "num_grounding_multi_in_batch": 6})
    torch.testing.assert_close(doubled["grd_ce"][0], local["grd_ce"][0] / 2)
    torch.testing.assert_close(doubled["grd_bce"][0], local["grd_bce"][0] / 3)


def test_a_mismatch_between_grd_tokens_and_target_sets_is_an_error() -> None:
    head = make_head()
    hidden, input_ids, batch, _ = toy_batch(np.random.default_rng(0), torch.randn(7, HIDDEN), 2, multi=False)
    batch["gt_boxes_3d"][1] = [PROPOSALS[:1], PROPOSALS[:1]]
    with pytest.raises(ValueError, match="sample 1: 2 target box sets for 1"):
        head.losses(head.predict(hidden, input_ids, batch), batch, head.counts(batch))


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("multi", [False, True])
def test_training_on_a_toy_scene_lowers_the_loss_and_grounds_held_out_queries(multi: bool, similarity: str) -> None:
    history, accuracy = train(make_head(similarity=similarity), multi, steps=150)
    assert np.mean(history[-10:]) < 0.1 * np.mean(history[:10])
    assert accuracy >= 0.9  # includes queries with no target (single) and zero or several targets (multi)


def test_no_target_wins_for_queries_whose_object_is_absent_after_training() -> None:
    head = make_head()
    train(head, multi=False, steps=150)
    rng = np.random.default_rng(7)
    classes = torch.from_numpy(np.random.default_rng(0).normal(size=(7, HIDDEN))).float()
    hidden, input_ids, batch, expected = toy_batch(rng, classes, 64, multi=False)
    absent = [i for i, want in enumerate(expected) if not want]
    assert len(absent) >= 10
    with torch.no_grad():
        outputs = head.predict(hidden, input_ids, batch)
    won = [outputs["grounding_logits"][i][0].argmax().item() == NUM_PROPOSALS for i in absent]
    assert np.mean(won) >= 0.9
    assert all(outputs["pred_boxes_3d"][i][0].shape == (0, 6) for i, w in zip(absent, won) if w)


def test_idle_loss_is_zero_and_reaches_every_parameter() -> None:
    head = make_head()
    loss = head.idle_loss(torch.device("cpu"))
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is not None for p in head.parameters())


def test_training_is_deterministic() -> None:
    first, accuracy_first = train(make_head(seed=3), multi=True, steps=5, seed=2)
    second, accuracy_second = train(make_head(seed=3), multi=True, steps=5, seed=2)
    assert first == second and accuracy_first == accuracy_second


# --- relations ----------------------------------------------------------------------------------------------


def test_the_relation_term_starts_at_zero_so_the_head_starts_as_without_relations() -> None:
    rng = np.random.default_rng(0)
    hidden, input_ids, batch, _ = toy_batch(rng, torch.randn(7, HIDDEN), 2, multi=False)
    plain = make_head(seed=3)
    related = make_head(seed=3, relation=True)
    related.load_state_dict(plain.state_dict(), strict=False)  # the shared weights; the relation's are new
    expected = plain.predict(hidden, input_ids, batch)["grounding_logits"]
    for got, want in zip(related.predict(hidden, input_ids, batch)["grounding_logits"], expected):
        torch.testing.assert_close(got, want)


def test_a_proposal_scores_by_how_well_its_nearest_proposals_match_the_anchor_query() -> None:
    head = make_head(relation=True, init_neighbour_distance=0.1)
    centres = torch.tensor([[0.0, 0, 0], [0.3, 0, 0], [3.0, 0, 0], [3.4, 0, 0]])
    proposals = torch.cat([centres, torch.ones(4, 3)], dim=1)
    anchors = torch.tensor([[0.0, 0.0, 5.0, 0.0]])  # the anchor query matches proposal 2 alone
    scores = head.neighbour_scores(anchors, proposals)[0]
    assert int(scores.argmax()) == 3  # proposal 2's nearest neighbour
    assert scores[2] < 1e-3  # a proposal is not its own neighbour
    assert scores[3] > 4.9 and scores[:2].abs().max() < 1e-3
    assert torch.equal(head.neighbour_scores(anchors[:, :1], proposals[:1]), torch.zeros(1, 1))  # no neighbour


def test_with_the_relation_on_training_reaches_the_anchor_query_and_relation_weights() -> None:
    head = make_head(relation=True)
    with torch.no_grad():
        head.relation["weight"].fill_(1.0)
    rng = np.random.default_rng(0)
    hidden, input_ids, batch, _ = toy_batch(rng, torch.randn(7, HIDDEN), 2, multi=False)
    outputs = head.predict(hidden, input_ids, batch)
    counts = head.counts(batch)
    loss, _ = head.losses(outputs, batch, counts)["grd_ce"]
    loss.backward()
    for name in ("anchor_proj.weight", "relation.weight", "relation.log_distance"):
        assert head.get_parameter(name).grad.abs().sum() > 0, name
