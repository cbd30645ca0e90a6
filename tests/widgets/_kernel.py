"""A real Jupyter kernel driven over the protocol, as a front end drives it: execute requests (with
or without a ``cellId``), comm messages (button clicks), and every iopub message kept so a test can
ask which cell a background thread's output was sent to."""

from __future__ import annotations

import queue
import time
from typing import Any

from jupyter_client.manager import start_new_kernel


class Kernel:
    def __init__(self, cwd: str) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3", startup_timeout=60, cwd=cwd)
        #: Every iopub message received so far, in order.
        self.messages: list[dict] = []
        #: The latest state of each widget model seen on iopub (comm_open and update messages).
        self.widget_state: dict[str, dict] = {}

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def _take(self, timeout: float) -> dict | None:
        try:
            message = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        self.messages.append(message)
        if message["msg_type"] in ("comm_open", "comm_msg"):
            data = message["content"].get("data", {})
            if "state" in data:
                self.widget_state.setdefault(message["content"]["comm_id"], {}).update(data["state"])
        return message

    def execute(
        self, code: str, cell_id: str | None = None, timeout: float = 120.0, expect_error: bool = False
    ) -> tuple[str, list[dict]]:
        """Run ``code`` as a cell; returns its msg_id and its outputs (stream, display, result,
        error messages whose parent is this request). Raises on an error reply, or on an ok reply
        when ``expect_error``."""
        metadata = {"cellId": cell_id} if cell_id is not None else {}
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        request = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(request)
        msg_id = request["header"]["msg_id"]
        outputs: list[dict] = []
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell did not finish within {timeout} s:\n{code}")
            message = self._take(timeout=1.0)
            if message is None or message["parent_header"].get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "status" and message["content"]["execution_state"] == "idle":
                idle = True
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append(message)
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=timeout)
        if expect_error:
            if reply["content"]["status"] != "error":
                raise AssertionError(f"cell was expected to fail but succeeded:\n{code}")
        elif reply["content"]["status"] != "ok":
            raise AssertionError(
                f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}\n"
                + "\n".join(reply["content"].get("traceback", []))
            )
        return msg_id, outputs

    def value(self, expression: str) -> Any:
        """The value of a Python literal expression evaluated in the kernel."""
        _, outputs = self.execute(f"print(repr({expression}))")
        text = "".join(o["content"]["text"] for o in outputs if o["msg_type"] == "stream")
        import ast

        return ast.literal_eval(text.strip())

    def click(self, comm_id: str) -> None:
        """Send a button click exactly as a browser does."""
        request = self.client.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}}
        )
        self.client.shell_channel.send(request)

    def drain(self, seconds: float) -> None:
        """Keep collecting iopub messages for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._take(timeout=0.05)

    def wait_for_message(self, predicate, timeout: float = 30.0, what: str = "a message") -> dict:
        for message in self.messages:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._take(timeout=0.1)
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
