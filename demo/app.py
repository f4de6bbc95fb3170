"""The demo's page: a header naming the model, then one tab per registered capability (:mod:`demo.tabs`)."""

from __future__ import annotations

import gradio as gr

from demo.context import DemoContext
from demo.tabs import registered_tabs


def build_demo(context: DemoContext) -> gr.Blocks:
    """The Gradio app: every tab of :func:`~demo.tabs.registered_tabs` (one the model cannot serve says why),
    with a queue whose model events share ``context.concurrency``."""
    inference = context.inference
    with gr.Blocks(title="UniGR") as demo:
        gr.Markdown(
            f"# UniGR\nModel: `{inference.model_dir}`. Inputs: up to {context.limits.max_megabytes:g} MB, "
            f"{context.limits.max_seconds:g} s, {context.limits.max_frames} frames (longer videos are sampled), "
            f"frames scaled to at most {context.limits.max_side} px."
        )
        with gr.Tabs():
            for spec in registered_tabs():
                with gr.Tab(spec.title):
                    reason = spec.available(context)
                    if reason is None:
                        spec.build(context)
                    else:
                        gr.Markdown(f"Not available with this model: {reason}.")
    demo.queue(default_concurrency_limit=context.concurrency, max_size=64)
    return demo
