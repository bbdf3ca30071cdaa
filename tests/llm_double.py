"""Protocol-level test doubles of OpenAI-compatible servers (NOT models), real HTTP servers on
127.0.0.1 that replay scripted or recorded replies in the OpenAI response format, so the real
``openai`` client and everything behind it are exercised; requests are kept for assertions.

- :class:`RecordedChatServer` answers ``POST /v1/chat/completions`` with recorded replies in
  order (when the recording runs out, an empty message: a garbage reply the loop must
  survive);
- :class:`CompletionsDouble` answers ``POST /v1/completions`` (with vLLM's ``/tokenize`` and
  token ids) with a script: what a real tiny model cannot be made to do on demand.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def send_json(handler: BaseHTTPRequestHandler, code: int, payload: dict) -> None:
    """Answer a request with ``payload`` as JSON (shared by the protocol doubles)."""
    data = json.dumps(payload).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class RecordedChatServer:
    def __init__(self, replies: list[str], together: int = 1, structured: bool = True):
        self.replies = list(replies)
        self.structured = structured  # False: answer response_format with 400, like some servers
        # with together=K a reply goes out only once K requests are in flight (a request
        # alone at the barrier for 20 s gets an error): proof that K were sent at once
        self.barrier = threading.Barrier(together) if together > 1 else None
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            send_json = send_json

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404, "only /v1/chat/completions is recorded")
                    return
                with server._lock:
                    server.requests.append(body)
                    if "response_format" in body and not server.structured:
                        refusal = {"message": "response_format is not supported",
                                   "type": "invalid_request_error"}  # fmt: skip
                        return self.send_json(400, {"error": refusal})
                    content = server.replies.pop(0) if server.replies else ""
                if server.barrier is not None:
                    try:
                        server.barrier.wait(timeout=20)
                    except threading.BrokenBarrierError:
                        self.send_error(503, "alone at the barrier")
                        return
                prompt_tokens = sum(len(m.get("content", "")) // 4 for m in body["messages"])
                payload = {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "recorded"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(content) // 4,
                        "total_tokens": prompt_tokens + len(content) // 4,
                    },
                }
                self.send_json(200, payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> RecordedChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class CompletionsDouble(ThreadingHTTPServer):
    """Replies to /v1/completions with ``script`` in order (the last one repeats), or, where
    ``script`` is a dict, with the reply for the request's prompt (``json.dumps(prompt)``), or,
    where it is a function, with ``script(request body)``."""

    request_queue_size = 256  # (socketserver's 5 resets connections when 40 clients arrive)

    def __init__(self, script, barrier=None, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.script = script if isinstance(script, dict) or callable(script) else list(script)
        self.requests, self.lock = [], threading.Lock()
        self.barrier = barrier  # replies marked "wait" wait there (for several servers at once)

    def tokens_of(self, text: str) -> list[int]:
        """The double's tokenizer (/tokenize): a text's first 64 UTF-8 bytes."""
        return list(text.encode())[:64]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    _send = send_json

    def do_GET(self):  # noqa: N802
        self._send(200, {"object": "list", "data": [{"id": "double", "object": "model",
                                                     "max_model_len": 1024}]})  # fmt: skip

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/tokenize":
            text = body.get("prompt") or json.dumps(body.get("messages"))
            return self._send(200, {"tokens": self.server.tokens_of(text), "count": 1,
                                    "max_model_len": 1024})  # fmt: skip
        server = self.server
        with server.lock:
            server.requests.append(body)
            if callable(server.script):
                reply = server.script(body)
            elif isinstance(server.script, dict):
                reply = server.script[json.dumps(body["prompt"])]
            else:
                reply = server.script.pop(0) if len(server.script) > 1 else server.script[0]
        if reply == "error":
            return self._send(500, {"error": {"message": "engine died", "type": "server"}})
        text, ids, reason, *extra = reply
        if "wait" in extra:
            try:
                server.barrier.wait(timeout=20)
            except threading.BrokenBarrierError:
                return self._send(500, {"error": {"message": "alone at the barrier"}})
        choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
        if "no-ids" not in extra:  # a server that ignores return_token_ids leaves them out
            choice["token_ids"] = ids
        self._send(200, {
            "id": "c", "object": "text_completion", "created": 0, "model": "double",
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(ids), "total_tokens": 1},
        })  # fmt: skip


@contextlib.contextmanager
def completions_double(script, barrier=None, port: int = 0):
    """A :class:`CompletionsDouble` serving in a thread while the block runs."""
    server = CompletionsDouble(script, barrier, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


VARIED = [
    ("Step one. ", [11] * 32, "length"),
    ("4}", [12, 13], "stop"),
    ("More work. ", [14] * 32, "length"),
    ("5}", [15, 16], "stop"),
    ("So the answer is \\boxed{4}", [17] * 9, "stop"),
    ("6}", [18, 19], "stop"),
    ("Hence \\boxed{6}", [20] * 5, "stop"),
]


def varied_reply(body: dict) -> tuple:
    """A :class:`CompletionsDouble` script: a reply that depends on the request alone (not on
    when it arrives: a batch's requests arrive in any order), so that episodes branch, continue,
    probe and finish in different ways, and alike each time they are played."""
    key = (body.get("seed") or 0) * 7 + len(body["prompt"]) * 3 + body["max_tokens"]
    return VARIED[key % len(VARIED)]
