"""An LLM judge on any OpenAI-compatible chat-completions endpoint, with an on-disk cache of every judgment.

The endpoint is ``POST <base_url>/chat/completions`` (OpenAI, Azure's OpenAI-compatible routes,
vLLM, SGLang, Ollama, ...). The request asks for JSON twice: ``response_format`` is
``{"type": "json_object"}`` (dropped for the rest of the run if the server answers 400 to it) and
every prompt of :mod:`evaluation.qa_scoring` says so in words. The reply's text is read with
:func:`parse_json_object` (``json.loads`` of the text, or of the first ``{...}`` in it when the
model wraps it in prose or a code fence; never ``eval``).

The API key is read from one environment variable (``OPENAI_API_KEY`` unless configured) at request
time and sent only in the ``Authorization`` header: it is not part of the config, the cache or any
message (error texts from the server are scrubbed of it too). Without the variable no header is sent
(local servers need none).

Every answer is cached under ``cache_dir`` as one JSON file per request, named by the SHA-256 of
the model name and the prompt messages, written atomically (temporary file, then rename), so a
re-run of the same scoring sends no request at all and two processes never see a half-written
entry. Only answers are cached: a request that still fails after the retries is not, so the next
run tries it again.

Outcomes are counted, never hidden (:class:`JudgeCounts`): ``ok`` (a JSON object came back),
``parse_failures`` (text with no JSON object in it), ``refusals`` (the model declined: an OpenAI
``refusal`` field, ``finish_reason == "content_filter"`` or no text) and ``errors`` (no answer after
the retries: HTTP 429 / 5xx / timeouts are retried with exponential back-off; other HTTP errors
are not).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

Messages = list[dict[str, str]]
RETRIED_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP statuses worth another try (rate limits, overload, gateway failures)."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge is and how hard to try.

    Attributes:
        base_url: the API root, e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1``.
        model: the model name the endpoint serves (part of every cache key).
        api_key_env: the environment variable holding the API key (its value is never stored here).
        cache_dir: folder of cached judgments; ``None``: no cache.
        timeout: seconds to wait for one response.
        max_retries: further tries after a retryable failure (429, 5xx, timeout, connection error).
        backoff: seconds before the first retry, doubled for each further one.
        workers: requests in flight at once.
        temperature: sampling temperature sent with every request (0: as deterministic as the server allows).
        max_tokens: the reply's length limit, or ``None`` for the server's default.
        json_mode: send ``response_format: {"type": "json_object"}``.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    cache_dir: Path | None = None
    timeout: float = 120.0
    max_retries: int = 5
    backoff: float = 2.0
    workers: int = 4
    temperature: float = 0.0
    max_tokens: int | None = None
    json_mode: bool = True

    def __post_init__(self) -> None:
        if not self.base_url or not self.model:
            raise ValueError("the judge needs a base URL and a model name")
        if self.max_retries < 0 or self.backoff < 0 or self.workers < 1:
            raise ValueError("judge max_retries and backoff must be >= 0 and workers >= 1")


@dataclass(frozen=True)
class Judgment:
    """One judgment: the parsed JSON object (``status == "ok"``), or why there is none.

    Attributes:
        status: ``"ok"``, ``"parse_failure"``, ``"refusal"`` or ``"error"``.
        parsed: the JSON object of the reply (``"ok"`` only).
        text: the reply's text (``None`` for a refusal without text or an error).
        detail: the refusal text or the error, for the report.
        cached: read from the cache (no request was sent).
    """

    status: str
    parsed: dict | None = None
    text: str | None = None
    detail: str = ""
    cached: bool = False


@dataclass
class JudgeCounts:
    """How the judgments of one scoring run came out, and what they cost."""

    ok: int = 0
    parse_failures: int = 0
    refusals: int = 0
    errors: int = 0
    cached: int = 0
    requests: int = 0

    def add(self, judgment: Judgment) -> None:
        attribute = {"ok": "ok", "parse_failure": "parse_failures", "refusal": "refusals", "error": "errors"}
        setattr(self, attribute[judgment.status], getattr(self, attribute[judgment.status]) + 1)
        self.cached += judgment.cached

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class JudgeRequestError(RuntimeError):
    """No answer from the endpoint (after the retries, or a non-retryable HTTP error)."""


def parse_json_object(text: str | None) -> dict | None:
    """The JSON object in a model's reply: the whole text, or else the first ``{...}`` that parses.

    Handles replies wrapped in a code fence or in prose (``Sure! {"pred": "yes"} ...``); returns
    ``None`` when no JSON object is found. Only ``json`` reads the text.
    """
    if not text:
        return None
    text = text.strip()
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def cache_key(model: str, messages: Messages) -> str:
    """SHA-256 hex digest of the model name and the prompt messages (canonical JSON)."""
    payload = json.dumps({"model": model, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, ensure_ascii=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def judgment_from_message(message: Mapping, finish_reason: str | None, cached: bool = False) -> Judgment:
    """A :class:`Judgment` from a chat-completions ``choices[0]`` message and finish reason."""
    text = message.get("content")
    refusal = message.get("refusal")
    if refusal or finish_reason == "content_filter" or not text:
        detail = str(refusal or finish_reason or "no text in the reply")
        return Judgment("refusal", text=text, detail=detail, cached=cached)
    parsed = parse_json_object(text)
    if parsed is None:
        return Judgment("parse_failure", text=text, detail="no JSON object in the reply", cached=cached)
    return Judgment("ok", parsed=parsed, text=text, cached=cached)


class JudgeClient:
    """Send prompts to the judge (or read them from the cache) and count what comes back.

    Args:
        config: the endpoint, model, key variable, cache and retry policy.
        sleep: how to wait between retries (tests pass a no-op).
    """

    def __init__(self, config: JudgeConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.sleep = sleep
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.requests = 0
        self._json_mode = config.json_mode
        self._lock = threading.Lock()
        if not os.environ.get(config.api_key_env):
            print(f"note: ${config.api_key_env} is not set; judge requests carry no API key")

    # ---- cache ----------------------------------------------------------------------------------

    def _cache_path(self, messages: Messages) -> Path | None:
        if self.config.cache_dir is None:
            return None
        key = cache_key(self.config.model, messages)
        return Path(self.config.cache_dir) / key[:2] / f"{key}.json"

    def _read_cache(self, path: Path | None) -> Judgment | None:
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
            return judgment_from_message(entry["message"], entry.get("finish_reason"), cached=True)
        except (json.JSONDecodeError, KeyError, TypeError):
            return None  # an unreadable entry is asked again and overwritten

    # ---- requests -------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.config.api_key_env)
        return text.replace(key, "***") if key else text

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with self._lock:
            self.requests += 1
        with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
            return json.loads(response.read())

    def _request(self, messages: Messages) -> dict:
        """The endpoint's response to ``messages``, retried on 429 / 5xx / timeouts."""
        attempt = 0
        while True:
            body: dict = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature}
            if self.config.max_tokens is not None:
                body["max_tokens"] = self.config.max_tokens
            if self._json_mode:
                body["response_format"] = {"type": "json_object"}
            try:
                return self._post(body)
            except urllib.error.HTTPError as error:
                text = self._scrub(error.read().decode(errors="replace")[:500])
                if error.code == 400 and "response_format" in body:  # the server does not take it
                    self._json_mode = False
                    print(f"note: the judge answered 400 ({text.strip()}); asking again without response_format")
                    continue
                failure = f"HTTP {error.code} from {self.url}: {text}"
                if error.code not in RETRIED_STATUS:
                    raise JudgeRequestError(failure) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                failure = self._scrub(f"{type(error).__name__} from {self.url}: {error}")
            except json.JSONDecodeError as error:
                failure = f"{self.url} answered something that is not JSON: {error}"
            if attempt >= self.config.max_retries:
                raise JudgeRequestError(f"{failure} (after {attempt + 1} tries)")
            self.sleep(self.config.backoff * 2**attempt)
            attempt += 1

    def judge(self, messages: Messages) -> Judgment:
        """One judgment of ``messages`` (a chat prompt): from the cache, or asked and then cached."""
        path = self._cache_path(messages)
        cached = self._read_cache(path)
        if cached is not None:
            return cached
        try:
            response = self._request(messages)
            choice = response["choices"][0]
            message, finish_reason = choice.get("message") or {}, choice.get("finish_reason")
        except JudgeRequestError as error:
            return Judgment("error", detail=str(error))
        except (KeyError, IndexError, TypeError) as error:
            return Judgment("error", detail=f"{self.url} answered without choices[0]: {error!r}")
        if path is not None:
            entry = {
                "model": self.config.model,
                "messages": messages,
                "message": {"content": message.get("content"), "refusal": message.get("refusal")},
                "finish_reason": finish_reason,
            }
            write_json_atomic(path, entry)
        return judgment_from_message(message, finish_reason)

    def judge_all(
        self, prompts: Mapping[str, Messages], desc: str = "judge"
    ) -> tuple[dict[str, Judgment], JudgeCounts]:
        """Judge every ``{item id: messages}`` (``config.workers`` at a time); the judgments and their counts."""
        before = self.requests
        results: dict[str, Judgment] = {}
        with ThreadPoolExecutor(self.config.workers) as pool:
            futures = {item: pool.submit(self.judge, messages) for item, messages in prompts.items()}
            for item, future in tqdm(futures.items(), desc=desc, unit="item", dynamic_ncols=True):
                results[item] = future.result()
        counts = JudgeCounts(requests=self.requests - before)
        for judgment in results.values():
            counts.add(judgment)
        return results, counts
