"""The harness channel: how the lab's person (the evaluation harness) sees and handles the cell.

Apart from the robot contract and from the hardware interfaces (servo bus, camera streams), the
cell answers HTTP/JSON on its own port under ``/harness/``. Only the evaluation harness, the
``cell_harness`` node (which offers the same to an operator under the ``/cell_harness/`` ROS
namespace) and tests use it; no policy or driver does.

* ``GET /harness/state``: ground truth: ``success``, ``progress``, ``episode_time``, ``seed``, object
  poses (x y z qx qy qz qw, base frame), ``objects_seen`` (the same, shifted by the arm's own end-effector
  error: where an operator who sees gripper and object would put them for the arm), true joint
  positions, the cell's real-time factor, camera stats;
* ``POST /harness/clear``: take the task's objects off the table (out of the gripper, say);
* ``POST /harness/reset`` ``{"seed": n}`` (optional): put the task's objects somewhere new, at random
  as a person would (the arm is not touched: home it through the contract first), start a new episode;
* ``POST /harness/leader`` ``{"position": [...]}``: move the leader arm by hand (rad, profile order).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from robot_stack.errors import UserError

Route = Callable[[dict[str, Any]], dict[str, Any]]


class HarnessServer:
    """JSON routes (``"GET /harness/state"`` -> handler(body) -> reply) on ``host:port`` (0: any free port)."""

    def __init__(self, routes: dict[str, Route], host: str = "127.0.0.1", port: int = 0):
        self.routes = routes

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                route = outer.routes.get(f"{method} {self.path.split('?')[0].rstrip('/')}")
                if route is None:
                    return self._send(404, {"error": f"no route {method} {self.path} (routes: {', '.join(outer.routes)})"})
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                    if not isinstance(body, dict):
                        raise ValueError("expected a JSON object")
                    return self._send(200, route(body))
                except (ValueError, TypeError, KeyError) as err:
                    return self._send(400, {"error": str(err)})

            def _send(self, code: int, reply: dict[str, Any]) -> None:
                data = json.dumps(reply).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a loaded host): it asks again

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, int(self.httpd.server_address[1])
        self.url = f"http://{self.host}:{self.port}/harness"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="harness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


class HarnessClient:
    """The harness channel from the outside (``url``: ``http://127.0.0.1:<port>/harness``)."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/{path}", data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as err:
            raise UserError(f"cell harness {self.url}/{path}: {json.loads(err.read() or b'{}').get('error', err)}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"no answer from the cell harness at {self.url} ({reason}): is the cell running?") from None

    def state(self) -> dict[str, Any]:
        return self._call("state")

    def wait(self, timeout: float) -> dict[str, Any]:
        """The first state the cell answers with within ``timeout`` s (it may still be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.state()
            except UserError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def clear(self) -> dict[str, Any]:
        return self._call("clear", {})

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        return self._call("reset", {} if seed is None else {"seed": int(seed)})

    def pose_leader(self, position: list[float]) -> dict[str, Any]:
        return self._call("leader", {"position": [float(v) for v in position]})
