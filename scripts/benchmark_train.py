"""Training throughput of UniGR at a model config's sizes, with random weights (a benchmark, not a test).

    python scripts/benchmark_train.py --model-config configs/model/qwen2_5_vl_7b.yaml --device cuda \\
        --dtype bf16 --attn flash_attention_2 --grad-checkpointing --lora 8 --batch-size 4

Builds Qwen2.5-VL from the config's ``backbone`` section directly on ``--device`` (in bf16 with
``--dtype bf16``, so a 7B model is never materialised in float32 on the host), puts UniGR with a
random SAM2 around it (``model.builder.assemble_unigr``), makes synthetic batches of random
frames and masks with the project's ``SampleCollator``, and times forward + backward + AdamW
steps as ``train.py`` takes them (``train.unigr_step``, clipping, bf16 autocast). It prints
samples/s, LLM tokens/s, peak memory, the step split into phases and, on a known GPU, the MFU of
the language model, next to the reference system (RGA3, ~1.5 samples/s per GPU).

Precision: ``fp32`` everything in float32; ``bf16`` bf16 autocast with float32 master weights for
what trains (as ``train.dtype: bf16``) and frozen matrices stored in bf16. ``--lora r`` trains what
RGA3 trains (``LORA_GROUPS``); without it everything trains.
There is no Qwen tokenizer offline: the tiny offline BPE (``model/tokenizer.py``) stands in, with
the embedding kept at the config's real vocabulary size; text is therefore a little longer in
tokens than Qwen's tokenizer would make it, while the video tokens (most of the sequence) are exact.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm
from transformers import ProcessorMixin, Qwen2_5_VLForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.builder import assemble_unigr, backbone_config, build_processor  # noqa: E402
from model.modeling_unigr import UniGRForConditionalGeneration  # noqa: E402
from model.tokenizer import train_tiny_tokenizer  # noqa: E402
from train import count_fn, unigr_step  # noqa: E402
from utils.data.collate import SampleCollator  # noqa: E402
from utils.data.prompts import referring_seg_answer, referring_seg_question  # noqa: E402
from utils.data.schema import Sample  # noqa: E402
from utils.training.trainable import configure_trainable, group_prefixes, parameter_counts  # noqa: E402
from utils.training.trainer import _to_device  # noqa: E402

REFERENCE_SAMPLES_PER_S = 1.5
"""RGA3's training throughput per GPU (7B + SAM2-L, 8 frames), the point UniGR is compared with."""
TARGET_SPEEDUP = 3.0
VIDEO_FPS = 6.0
LORA_GROUPS = {
    "embeddings": "full",
    "llm": "lora",
    "merger": "frozen",
    "vision": "frozen",
    "seg_proj": "full",
    "sam2_encoder": "frozen",
    "sam2_decoder": "full",
    "sam2_memory": "frozen",
}
"""What trains with ``--lora``: RGA3's set (its ``train_joint.py``): LoRA on the LLM, ``embed_tokens`` and
``lm_head``, SAM2's decoder and the ``[SEG]`` projection; the vision tower and SAM2's encoder are frozen."""
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("H800", 989.4), ("A100", 312.0))
"""Dense bf16 peak per device-name substring, first match wins (vendor datasheets, no sparsity)."""


@dataclass
class StepTimes:
    """Seconds spent in each phase of the timed steps (summed over steps) and what they processed."""

    phases: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    tokens: int = 0  # non-pad LLM tokens
    padded_tokens: int = 0  # batch x padded length, summed
    attention_pairs: float = 0.0  # sum over sequences of (non-pad length)^2

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", required=True, help="YAML with a model: section (configs/model/*.yaml)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
    parser.add_argument(
        "--frame-size",
        type=int,
        default=None,
        help="side of the square source frames in px "
        "(default: the largest multiple of 28 within the processor's max_pixels)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="samples per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--qa-fraction", type=float, default=0.0, help="share of samples that are QA (no masks)")
    parser.add_argument("--attn", choices=("sdpa", "flash_attention_2", "eager"), default="sdpa")
    parser.add_argument("--lora", type=int, default=None, metavar="R", help="LoRA rank; RGA3's trainable set")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by name)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0.0 <= args.qa_fraction <= 1.0:
        parser.error("--qa-fraction must be in [0, 1]")
    return args


def build_model(
    model_cfg: dict, args: argparse.Namespace, device: torch.device
) -> tuple[UniGRForConditionalGeneration, ProcessorMixin]:
    """Random-weight UniGR at the config's sizes on ``device`` and its processor (offline tokenizer)."""
    tokenizer = train_tiny_tokenizer(model_cfg["tokenizer"]["corpus"], model_cfg["tokenizer"]["vocab_size"])
    config = backbone_config(model_cfg["backbone"], tokenizer)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    with torch.device(device):
        backbone = Qwen2_5_VLForConditionalGeneration._from_config(config, attn_implementation=args.attn, dtype=dtype)
    processor = build_processor(tokenizer, **model_cfg["processor"])
    lora = {"r": args.lora, "alpha": 2 * args.lora, "dropout": 0.05} if args.lora else None
    model = assemble_unigr(backbone, processor, model_cfg["seg"], lora=lora, attn_implementation=args.attn)
    return model.to(device), processor


def configure_training(model: UniGRForConditionalGeneration, args: argparse.Namespace) -> torch.optim.Optimizer:
    """Choose what trains, store each weight in its precision, and return AdamW over the trainable ones."""
    modes = LORA_GROUPS if args.lora else dict.fromkeys(group_prefixes(), "full")
    groups = {name: {"mode": mode} for name, mode in modes.items()}
    optimizer_groups = configure_trainable(model, groups, lr=1e-5, weight_decay=0.0, new_token_ids=[])
    frozen_dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    for param in model.parameters():  # norms and biases (1-D) stay float32, as autocast expects
        param.data = param.data.to(frozen_dtype if param.dim() > 1 and not param.requires_grad else torch.float32)
    if args.grad_checkpointing:
        model.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return torch.optim.AdamW(optimizer_groups)


def frame_side(max_pixels: int, patch: int = 28) -> int:
    """Largest multiple of ``patch`` whose square fits in ``max_pixels`` (Qwen then leaves frames unresized)."""
    return math.isqrt(max_pixels) // patch * patch


def synthetic_sample(rng: np.random.Generator, index: int, frames: int, side: int, qa: bool) -> Sample:
    """Random ``(T, side, side, 3)`` frames; a referring question with one random box mask, or a QA turn."""
    video = rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
    names, timestamps = [str(t) for t in range(frames)], np.arange(frames) / VIDEO_FPS
    if qa:
        conversation = [
            {"role": "user", "content": "What is the red square doing in this video?"},
            {"role": "assistant", "content": "The red square is moving left, then it stops."},
        ]
        return Sample(f"bench/qa/{index}", video, names, conversation, timestamps=timestamps)
    masks = np.zeros((1, frames, side, side), dtype=bool)
    for t in range(frames):
        y, x = rng.integers(0, side // 2, 2)
        masks[0, t, y : y + side // 4, x : x + side // 4] = True
    conversation = [
        {"role": "user", "content": referring_seg_question(["the red square moving left"])},
        {"role": "assistant", "content": referring_seg_answer(1)},
    ]
    return Sample(f"bench/seg/{index}", video, names, conversation, masks, timestamps=timestamps)


def is_qa(index: int, qa_fraction: float) -> bool:
    """Spread QA samples evenly: sample ``index`` is QA when ``qa_fraction * index`` crosses an integer."""
    return math.floor((index + 1) * qa_fraction) > math.floor(index * qa_fraction)


def device_sync(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA runs asynchronously); a no-op on the CPU."""
    return torch.cuda.synchronize if device.type == "cuda" else lambda: None


def instrument_segment(model: UniGRForConditionalGeneration, marks: dict[str, float], sync: Callable[[], None]) -> None:
    """Record in ``marks`` when the segmentation head starts and when the gradient of its input is complete.

    The gradient of the last hidden state is complete once SAM2's backward and the LM head's
    backward have both run, which splits the backward pass into head and backbone parts.
    """
    predict = model.seg_head.predict

    def mark(name: str) -> None:
        sync()
        marks[name] = time.perf_counter()

    def timed_predict(last_hidden: torch.Tensor, input_ids: torch.Tensor, batch: dict):
        mark("head_fwd_start")
        if last_hidden.requires_grad:
            last_hidden.register_hook(lambda grad: mark("head_bwd_end"))
        return predict(last_hidden, input_ids, batch)

    model.seg_head.predict = timed_predict


def time_step(
    model: UniGRForConditionalGeneration,
    optimizer: torch.optim.Optimizer,
    collate: SampleCollator,
    samples: list[Sample],
    args: argparse.Namespace,
    device: torch.device,
    marks: dict[str, float],
) -> tuple[dict[str, float], torch.Tensor]:
    """One training step on ``samples``; the seconds of each phase and the ``(B, L)`` attention mask."""
    sync = device_sync(device)
    marks.clear()
    start = time.perf_counter()
    batch = collate(samples)
    counts = count_fn(model)(batch)
    collated = time.perf_counter()
    batch = _to_device(batch, device)
    sync()
    moved = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
        loss, _ = unigr_step(model, {**batch, **counts})
    sync()
    forward_end = time.perf_counter()
    loss.backward()
    sync()
    backward_end = time.perf_counter()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync()
    end = time.perf_counter()
    head_start = marks.get("head_fwd_start", forward_end)
    head_bwd_end = marks.get("head_bwd_end", forward_end)
    phases = {
        "collate": collated - start,
        "to_device": moved - collated,
        "backbone_fwd": head_start - moved,
        "head_fwd": forward_end - head_start,
        "head_bwd": head_bwd_end - forward_end,
        "backbone_bwd": backward_end - head_bwd_end,
        "optimizer": end - backward_end,
    }
    return phases, batch["attention_mask"]


def llm_model_flops(model: UniGRForConditionalGeneration, times: StepTimes) -> float:
    """Model FLOPs of the language model over the timed steps (no recomputation counted).

    Per non-pad token: 2 N (forward) + 2 N (input gradients) + 2 N_trainable (weight gradients),
    N = the LLM's matrix weights plus the LM head (6 N when everything trains); plus causal
    attention, 6 x layers x hidden x L^2 per sequence of L non-pad tokens (QK^T and AV, halved by
    the causal mask, x3 for the backward).
    """
    weights = [p for name, p in model.language_model.named_parameters() if p.dim() == 2 and "embed_tokens" not in name]
    weights.append(model.backbone.lm_head.weight)
    matmul = sum(p.numel() for p in weights)
    trainable = sum(p.numel() for p in weights if p.requires_grad)
    text = model.backbone.config.get_text_config()
    attention = 6 * text.num_hidden_layers * text.hidden_size * times.attention_pairs
    return times.tokens * (4 * matmul + 2 * trainable) + attention


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """Dense bf16 peak of the GPU in TFLOP/s (``override`` if given); ``None`` on CPU or an unknown GPU."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def peak_memory_gib(device: torch.device) -> float:
    """GPU: most memory allocated by tensors since the timed steps began; CPU: the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def report(figures: dict[str, float], header: list[str]) -> None:
    """Print the run's settings and figures as an aligned table."""
    rows = [
        ("samples/s (collation in loader workers)", f"{figures['samples_per_s']:.3f}"),
        ("samples/s (collation in the step)", f"{figures['samples_per_s_serial']:.3f}"),
        ("LLM tokens/s (non-pad)", f"{figures['tokens_per_s']:,.0f}"),
        ("LLM tokens/sample, pad share", f"{figures['tokens_per_sample']:.0f}, {figures['pad_fraction']:.1%}"),
        ("peak memory GiB", f"{figures['peak_memory_gib']:.2f}"),
        ("step ms (excl. collation)", f"{figures['step_ms']:.1f}"),
        ("  collate (CPU, per step)", f"{figures['collate_ms']:.1f}"),
        ("  batch to device", f"{figures['to_device_ms']:.1f}"),
        ("  backbone fwd (vision + LLM + CE)", f"{figures['backbone_fwd_ms']:.1f}"),
        ("  SAM2 head fwd (+ mask losses)", f"{figures['head_fwd_ms']:.1f}"),
        ("  SAM2 head + LM head bwd", f"{figures['head_bwd_ms']:.1f}"),
        ("  backbone bwd", f"{figures['backbone_bwd_ms']:.1f}"),
        ("  clip + AdamW", f"{figures['optimizer_ms']:.1f}"),
        ("LLM model TFLOP/s", f"{figures['llm_tflops_per_s']:.3f}"),
        ("LLM MFU", f"{figures['mfu']:.1%}" if "mfu" in figures else "n/a (needs bf16 on a GPU of known peak)"),
        (
            f"vs reference {REFERENCE_SAMPLES_PER_S} samples/s/GPU (RGA3)",
            f"{figures['samples_per_s'] / REFERENCE_SAMPLES_PER_S:.2f}x (target {TARGET_SPEEDUP:.0f}x; "
            "comparable for 7B on one GPU only)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(header))
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark; returns the printed figures (rates per second, times in ms, memory in GiB)."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model_cfg = OmegaConf.to_container(OmegaConf.load(args.model_config).model, resolve=True)
    model, processor = build_model(model_cfg, args, device)
    optimizer = configure_training(model, args)
    model.train()
    marks: dict[str, float] = {}
    instrument_segment(model, marks, device_sync(device))
    collate = SampleCollator(processor, model.seg_head.image_size)
    side = args.frame_size or frame_side(model_cfg["processor"]["max_pixels"])
    rng = np.random.default_rng(args.seed)

    times = StepTimes()
    for step in tqdm(range(args.warmup + args.steps), desc="benchmark", dynamic_ncols=True):
        if step == args.warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        first = step * args.batch_size
        samples = [
            synthetic_sample(rng, i, args.frames, side, is_qa(i, args.qa_fraction))
            for i in range(first, first + args.batch_size)
        ]
        phases, attention_mask = time_step(model, optimizer, collate, samples, args, device, marks)
        if step < args.warmup:
            continue
        for name, seconds in phases.items():
            times.add(name, seconds)
        lengths = attention_mask.sum(1).double()
        times.samples += len(samples)
        times.tokens += int(lengths.sum())
        times.padded_tokens += attention_mask.numel()
        times.attention_pairs += float((lengths**2).sum())

    step_seconds = sum(seconds for name, seconds in times.phases.items() if name != "collate")
    flops = llm_model_flops(model, times)
    figures = {
        "samples_per_s": times.samples / step_seconds,
        "samples_per_s_serial": times.samples / (step_seconds + times.phases["collate"]),
        "tokens_per_s": times.tokens / step_seconds,
        "tokens_per_sample": times.tokens / times.samples,
        "pad_fraction": 1 - times.tokens / times.padded_tokens,
        "peak_memory_gib": peak_memory_gib(device),
        "step_ms": 1000 * step_seconds / args.steps,
        **{f"{name}_ms": 1000 * seconds / args.steps for name, seconds in times.phases.items()},
        "llm_tflops_per_s": flops / step_seconds / 1e12,
    }
    peak = peak_tflops(device, args.peak_tflops) if args.dtype == "bf16" or args.peak_tflops else None
    if peak is not None:
        figures["mfu"] = figures["llm_tflops_per_s"] / peak
    counts = parameter_counts(model)
    vocab = model.backbone.config.get_text_config().vocab_size
    header = [
        f"config {args.model_config}: {counts['total'] / 1e9:.3f} B parameters, {counts['trainable'] / 1e6:.1f} M "
        f"train ({'LoRA r=' + str(args.lora) if args.lora else 'all'})",
        f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} "
        f"({torch.get_num_threads()} threads), {args.dtype}, attention {args.attn}, "
        f"gradient checkpointing {'on' if args.grad_checkpointing else 'off'}",
        f"batch {args.batch_size} x {args.frames} frames of {side} px, QA share {args.qa_fraction:.2f}, "
        f"SAM2 at {model.seg_head.image_size} px; {args.steps} timed steps after {args.warmup} warm-up",
        f"tokenizer: offline stand-in ({len(processor.tokenizer)} tokens), embedding sized to the real vocab ({vocab})",
    ]
    report(figures, header)
    return figures


if __name__ == "__main__":
    main()
