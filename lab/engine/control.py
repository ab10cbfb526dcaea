"""The supervisor's control channel: JSON lines over a root-only Unix socket."""
from __future__ import annotations

import json
import socket
from typing import Any

from lab.engine.state import lab_dir
from lab.errors import LabError

SOCKET_NAME = "control.sock"


def socket_path(lab: str) -> str:
    return str(lab_dir(lab) / SOCKET_NAME)


def request(lab: str, op: str, timeout: float = 30.0, **args: Any) -> Any:
    """Send one request to a lab's supervisor; return its result or raise its error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path(lab))
        sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise LabError(f"the supervisor of lab '{lab}' is not answering",
                       hint="`lab clean` removes what a dead lab left") from None
    except TimeoutError:
        raise LabError(f"the supervisor of lab '{lab}' did not answer in {timeout:.0f} s") from None
    finally:
        sock.close()
    if not data:
        raise LabError(f"the supervisor of lab '{lab}' closed the connection")
    reply = json.loads(data)
    if not reply.get("ok"):
        raise LabError(reply.get("error", "unknown error"), hint=reply.get("hint", ""))
    return reply.get("result")


def encode_reply(result: Any = None, error: LabError | None = None) -> bytes:
    if error is not None:
        body = {"ok": False, "error": error.message, "hint": error.hint}
    else:
        body = {"ok": True, "result": result}
    return json.dumps(body).encode() + b"\n"
