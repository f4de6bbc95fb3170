"""The LLM judge client against a local OpenAI-compatible server: caching, retries, counting, the key kept secret."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evaluation.judge import JudgeClient, JudgeConfig, cache_key, parse_json_object

SECRET = "sk-test-0123456789-SECRET"
KEY_ENV = "UNIGR_TEST_JUDGE_KEY"

Reply = tuple[int, dict | str]
"""``(HTTP status, JSON body or raw text)``."""


def completion(content: str | None, refusal: str | None = None, finish_reason: str = "stop") -> Reply:
    """A chat-completions response whose first choice says ``content``."""
    message = {"role": "assistant", "content": content, "refusal": refusal}
    return 200, {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"message": message, "finish_reason": finish_reason}],
    }


class JudgeServer:
    """A chat-completions endpoint on 127.0.0.1 answering with ``responder(request body, call number)``;
    it records every request's headers and body."""

    def __init__(self, responder: Callable[[dict, int], Reply]):
        self.responder = responder
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, reply = server.responder(body, len(server.requests))
                data = (json.dumps(reply) if isinstance(reply, dict) else reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def judge_config(server: JudgeServer, cache: Path | None, **overrides) -> JudgeConfig:
    options = dict(api_key_env=KEY_ENV, cache_dir=cache, backoff=0.0, workers=2, timeout=5.0) | overrides
    return JudgeConfig(server.base_url, "judge-model", **options)


def prompt(text: str) -> list[dict]:
    return [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": text}]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def test_a_second_run_reads_every_judgment_from_the_cache_and_sends_nothing(tmp_path: Path) -> None:
    prompts = {f"q{i}": prompt(f"question {i}") for i in range(3)}
    with JudgeServer(lambda body, n: completion(json.dumps({"score": len(body["messages"][1]["content"])}))) as server:
        first, counts = JudgeClient(judge_config(server, tmp_path)).judge_all(prompts)
        assert (counts.requests, counts.ok, counts.cached) == (3, 3, 0)
        again, counts = JudgeClient(judge_config(server, tmp_path)).judge_all(prompts)
        assert (counts.requests, counts.ok, counts.cached) == (0, 3, 3)
        assert len(server.requests) == 3
    assert (
        {k: j.parsed for k, j in again.items()}
        == {k: j.parsed for k, j in first.items()}
        == {k: {"score": 10} for k in prompts}
    )
    files = sorted(tmp_path.rglob("*.json"))
    assert [f.stem for f in files] == sorted(cache_key("judge-model", p) for p in prompts.values())


def test_the_cache_key_depends_on_the_model_and_the_messages() -> None:
    assert cache_key("a", prompt("x")) != cache_key("b", prompt("x")) != cache_key("a", prompt("y"))
    assert cache_key("a", prompt("x")) == cache_key("a", prompt("x"))


@pytest.mark.parametrize("failure", [500, 503, 429])
def test_retryable_failures_are_retried_until_an_answer_comes(failure: int, tmp_path: Path) -> None:
    def responder(body, call):
        return (failure, {"error": "busy"}) if call < 3 else completion('{"pred": "yes"}')

    with JudgeServer(responder) as server:
        waits = []
        client = JudgeClient(judge_config(server, tmp_path, backoff=0.5), sleep=waits.append)
        judgment = client.judge(prompt("q"))
    assert judgment.status == "ok" and judgment.parsed == {"pred": "yes"}
    assert len(server.requests) == 3 and waits == [0.5, 1.0]  # exponential back-off


def test_a_timeout_is_retried(tmp_path: Path) -> None:
    def responder(body, call):
        if call == 1:
            time.sleep(0.6)
        return completion('{"pred": "no"}')

    with JudgeServer(responder) as server:
        judgment = JudgeClient(judge_config(server, tmp_path, timeout=0.2)).judge(prompt("q"))
    assert judgment.status == "ok" and len(server.requests) == 2


def test_exhausted_retries_are_an_error_that_is_not_cached(tmp_path: Path) -> None:
    with JudgeServer(lambda body, call: (500, {"error": "down"})) as server:
        judgments, counts = JudgeClient(judge_config(server, tmp_path, max_retries=2)).judge_all({"q": prompt("q")})
        assert len(server.requests) == 3
    assert counts.errors == 1 and judgments["q"].status == "error" and "HTTP 500" in judgments["q"].detail
    assert not list(tmp_path.rglob("*.json"))


def test_a_client_error_is_not_retried(tmp_path: Path) -> None:
    with JudgeServer(lambda body, call: (401, {"error": "bad key"})) as server:
        judgment = JudgeClient(judge_config(server, tmp_path, json_mode=False)).judge(prompt("q"))
        assert len(server.requests) == 1
    assert judgment.status == "error" and "401" in judgment.detail


def test_parse_failures_and_refusals_are_counted_not_hidden(tmp_path: Path) -> None:
    replies = {
        "plain": completion('{"pred": "yes", "score": 5}'),
        "fenced": completion('```json\n{"pred": "no", "score": 1}\n```'),
        "prose": completion('Here is my verdict: {"pred": "yes", "score": 4} as requested.'),
        "garbage": completion("I think it is a good answer, five stars"),
        "python": completion("{'pred': 'yes', 'score': 4}"),  # not JSON: never eval()'d
        "refused": completion(None, refusal="I can't help with that."),
        "filtered": completion("", finish_reason="content_filter"),
    }
    with JudgeServer(lambda body, call: replies[body["messages"][1]["content"]]) as server:
        judgments, counts = JudgeClient(judge_config(server, tmp_path)).judge_all({k: prompt(k) for k in replies})
    assert {k: j.status for k, j in judgments.items()} == {
        "plain": "ok",
        "fenced": "ok",
        "prose": "ok",
        "garbage": "parse_failure",
        "python": "parse_failure",
        "refused": "refusal",
        "filtered": "refusal",
    }
    assert judgments["fenced"].parsed == {"pred": "no", "score": 1}
    assert judgments["prose"].parsed == {"pred": "yes", "score": 4}
    assert judgments["refused"].detail == "I can't help with that."
    assert (counts.ok, counts.parse_failures, counts.refusals, counts.errors) == (3, 2, 2, 0)
    again, _ = JudgeClient(judge_config(server, tmp_path)).judge_all({k: prompt(k) for k in replies})
    assert {k: j.status for k, j in again.items()} == {k: j.status for k, j in judgments.items()}  # cached too


def test_json_is_requested_and_dropped_when_the_server_refuses_it(tmp_path: Path) -> None:
    def responder(body, call):
        if "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported"}}
        return completion('{"pred": "yes"}')

    with JudgeServer(responder) as server:
        client = JudgeClient(judge_config(server, tmp_path))
        judgments, _ = client.judge_all({"a": prompt("a"), "b": prompt("b")})
        bodies = [r["body"] for r in server.requests]
    assert all(j.status == "ok" for j in judgments.values())
    assert bodies[0]["response_format"] == {"type": "json_object"} and bodies[0]["model"] == "judge-model"
    assert sum("response_format" in b for b in bodies) <= 2 and "response_format" not in bodies[-1]
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_the_key_goes_in_the_authorization_header_and_nowhere_else(tmp_path: Path, capsys) -> None:
    def responder(body, call):
        if body["messages"][1]["content"] == "echo":  # a server that quotes the request back in its error
            return 403, {"error": f"forbidden: {server.requests[-1]['headers'].get('Authorization')}"}
        return completion('{"pred": "yes", "score": 5}')

    with JudgeServer(responder) as server:
        config = judge_config(server, tmp_path, json_mode=False)
        judgments, _ = JudgeClient(config).judge_all({"ok": prompt("fine"), "echo": prompt("echo")})
    assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in server.requests)
    assert SECRET not in repr(config)
    assert judgments["echo"].status == "error" and SECRET not in judgments["echo"].detail
    assert "***" in judgments["echo"].detail
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text()
    output = capsys.readouterr()
    assert SECRET not in output.out + output.err


def test_without_the_key_variable_no_authorization_header_is_sent(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(KEY_ENV)
    with JudgeServer(lambda body, call: completion('{"pred": "no"}')) as server:
        assert JudgeClient(judge_config(server, None)).judge(prompt("q")).status == "ok"
        assert "Authorization" not in server.requests[0]["headers"]
    assert KEY_ENV in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, parsed",
    [
        ('{"a": 1}', {"a": 1}),
        ('  ```json\n{"a": [1, 2]}\n```  ', {"a": [1, 2]}),
        ('Sure. {"a": {"b": 2}} Done. {"c": 3}', {"a": {"b": 2}}),
        ("[1, 2]", None),
        ('{not json} but {"ok": true}', {"ok": True}),
        ("", None),
        (None, None),
    ],
)
def test_the_first_json_object_is_read_from_the_reply(text, parsed) -> None:
    assert parse_json_object(text) == parsed
