"""Protocol-level test double of an OpenAI-compatible chat server (NOT a model).

A real HTTP server on 127.0.0.1 that answers ``POST /v1/chat/completions`` with recorded
replies, in order, in the OpenAI response format, so the real ``openai`` client and the whole
agent loop are exercised. Requests are kept for assertions. When the recording runs out it
answers with an empty message (a garbage reply the loop must survive).
"""

from __future__ import annotations

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
