"""Visual prompts: what a user points at on the frames, drawn on pixels, worded in text and followed over time."""
