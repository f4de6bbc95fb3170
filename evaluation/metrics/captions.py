"""Caption metrics for free-form answers: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) with ``pycocoevalcap``.

The scorers are the COCO caption evaluation's own (``pycocoevalcap`` 1.2: ``bleu/bleu.py`` with the
``closest`` brevity length, ``meteor/meteor.py`` running ``meteor-1.5.jar -l en -norm``,
``rouge/rouge.py`` with beta 1.2, ``cider/cider.py``, i.e. CIDEr-D with IDF over the references of
the scored set). Only the tokenisation is chosen, and every result names it:

* ``"none"``: the texts as they are, newlines made spaces, split on whitespace by the scorers. This
  is RGA3's VideoInfer protocol (``evaluation/videoinfer/eval.py`` in qirui-chen/RGA3-release feeds
  raw answers to the scorers), so its numbers compare with the paper's.
* ``"ptb"``: the COCO standard: Stanford CoreNLP's PTB tokenizer (``tokenizer/ptbtokenizer.py``:
  ``-preserveLines -lowerCase``, then its punctuation tokens dropped). Needs Java.
* ``"simple"``: a pure-Python stand-in for ``"ptb"`` when there is no Java: lower-case, punctuation
  split off and dropped (it differs from PTB on contractions such as "don't" -> "do n't").

METEOR always needs Java (the scorer is a jar): without ``java`` on the PATH it is reported as not
run, with the reason, and the other metrics are still computed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Hashable, Mapping

TOKENIZERS = ("none", "ptb", "simple")
NOT_RUN = "not run"
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
"""The tokens pycocoevalcap's PTB wrapper drops after tokenising."""

WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


class JavaMissing(RuntimeError):
    """A metric or tokenizer that runs a Java jar was asked for, and ``java`` is not on the PATH."""


def java_available() -> bool:
    """Whether ``java`` is on the PATH (METEOR and the PTB tokenizer run jars)."""
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """Lower-case words with punctuation split off and dropped: ``"A red car, moving."`` -> ``"a red car moving"``."""
    tokens = WORD_OR_MARK.findall(text.lower())
    return " ".join(token for token in tokens if token not in PTB_PUNCTUATION)


def tokenize(texts: Mapping[Hashable, list[str]], tokenizer: str) -> dict[Hashable, list[str]]:
    """``{id: [text, ...]}`` tokenised by ``tokenizer`` (one of :data:`TOKENIZERS`), tokens joined by spaces
    (one Java process for all the texts with ``"ptb"``)."""
    if tokenizer == "none":
        return {key: [text.replace("\n", " ") for text in values] for key, values in texts.items()}
    if tokenizer == "simple":
        return {key: [simple_tokenize(text) for text in values] for key, values in texts.items()}
    if tokenizer == "ptb":
        if not java_available():
            raise JavaMissing("the PTB tokenizer runs Stanford CoreNLP (Java): install a JRE or use 'simple' or 'none'")
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize({key: [{"caption": text} for text in values] for key, values in texts.items()})
    raise ValueError(f"unknown caption tokenizer {tokenizer!r}; choose one of {TOKENIZERS}")


def caption_scores(
    references: Mapping[str, list[str]], predictions: Mapping[str, str], tokenizer: str = "none"
) -> dict:
    """Score each prediction against its references.

    Args:
        references: ``{id: [reference, ...]}`` (at least one each).
        predictions: ``{id: prediction}``, the same ids.
        tokenizer: ``"none"``, ``"ptb"`` or ``"simple"`` (see the module docstring).
    Returns:
        ``{"overall": {"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}, "per_sample": {id: {...}},
        "tokenizer": ..., "not_run": {metric: reason}}``; a metric that could not run is
        :data:`NOT_RUN` in ``overall`` and absent per sample.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(predictions):
        raise ValueError("references and predictions must have the same ids")
    if not references:
        raise ValueError("no captions to score")
    empty = [key for key, values in references.items() if not values]
    if empty:
        raise ValueError(f"no reference for {', '.join(map(str, empty[:5]))}")
    ids = sorted(references)
    both = tokenize(
        {**{("ref", k): list(references[k]) for k in ids}, **{("pred", k): [predictions[k]] for k in ids}}, tokenizer
    )
    gts = {key: both[("ref", key)] for key in ids}
    res = {key: both[("pred", key)] for key in ids}
    overall: dict = {}
    per_sample: dict[str, dict] = {key: {} for key in ids}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        overall[f"BLEU-{n + 1}"] = float(bleu[n])
        for key, value in zip(ids, bleu_each[n]):
            per_sample[key][f"BLEU-{n + 1}"] = float(value)
    scorers = [("ROUGE-L", Rouge), ("CIDEr", Cider)]
    not_run = {}
    if java_available():
        from pycocoevalcap.meteor.meteor import Meteor

        scorers.insert(0, ("METEOR", Meteor))
    else:
        overall["METEOR"] = NOT_RUN
        not_run["METEOR"] = "java is not on the PATH (METEOR runs meteor-1.5.jar)"
    for name, scorer in scorers:
        score, each = scorer().compute_score(gts, res)
        overall[name] = float(score)
        for key, value in zip(ids, each):
            per_sample[key][name] = float(value)
    return {"overall": overall, "per_sample": per_sample, "tokenizer": tokenizer, "not_run": not_run}
