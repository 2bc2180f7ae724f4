"""A local stand-in for the LSEG Workspace API proxy, which lseg-data's desktop session talks to:
the HTTP side (status, handshake, historical pricing, streaming discovery) on a real
pytest-httpserver, and the pricing WebSocket (OMM JSON, sub-protocol tr_json2) on a real
`websockets` server. Answers have the shapes LSEG documents (lseg-data's own docstrings show the
historical-pricing one). The library finds the proxy as it finds Workspace's: by the port
written in `.portInUse` under the user's configuration directory."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from websockets.sync.server import ServerConnection, serve
from websockets.typing import Subprotocol
from werkzeug import Request, Response

HISTORY = "/api/rdp/data/historical-pricing/v1/views/interday-summaries/"


@dataclass
class Proxy:
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """RIC -> the JSON answer for it (a list of one item, as LSEG sends)."""
    refresh: dict[str, Any] = field(default_factory=dict)
    """The fields of each item's refresh (its current image)."""
    updates: Sequence[Mapping[str, Any]] = ()
    """The fields of the updates sent after the refresh."""
    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(RIC, query) of each historical-pricing request."""
    streamed: list[dict[str, Any]] = field(default_factory=list)
    """The OMM messages the library sent on the WebSocket."""
    ws_port: int = 0

    def answer(self, request: Request) -> Response:
        if request.path == "/api/status":
            return Response("ST_PROXY_READY")
        if request.path == "/api/handshake":
            return _json({"access_token": "local-token", "expires_in": 604800})
        if request.path == "/api/rdp/streaming/pricing/v1/":
            return _json({"services": [self._endpoint()]})
        if request.path.startswith(HISTORY):
            ric = request.path.removeprefix(HISTORY)
            self.asked.append((ric, dict(request.args)))
            return _json(self.history[ric])
        return Response(status=404)

    def _endpoint(self) -> dict[str, Any]:
        return {
            "port": self.ws_port,
            "location": ["local"],
            "transport": "websocket",
            "provider": "local",
            "endpoint": "127.0.0.1/WebSocket",
            "dataFormat": ["tr_json2"],
        }

    def pricing(self, connection: ServerConnection) -> None:
        for text in connection:
            for message in _messages(json.loads(text)):
                self.streamed.append(message)
                if message.get("Domain") == "Login":
                    connection.send(json.dumps([_login(message["ID"])]))
                elif message.get("Domain") == "MarketPrice":
                    key = {"Service": "ELEKTRON_DD", "Name": message["Key"]["Name"]}
                    state = {"Stream": "Open", "Data": "Ok", "Text": "All is well"}
                    refresh = {"ID": message["ID"], "Type": "Refresh", "Key": key, "State": state}
                    connection.send(json.dumps([{**refresh, "Fields": self.refresh}]))
                    for fields in self.updates:
                        update = {"ID": message["ID"], "Type": "Update", "UpdateType": "Trade"}
                        connection.send(json.dumps([{**update, "Key": key, "Fields": fields}]))


def _messages(parsed: Any) -> list[dict[str, Any]]:
    return parsed if isinstance(parsed, list) else [parsed]


def _login(stream_id: int) -> dict[str, Any]:
    state = {"Stream": "Open", "Data": "Ok", "Text": "Login accepted"}
    return {"ID": stream_id, "Type": "Refresh", "Domain": "Login", "State": state}


def _json(body: Any) -> Response:
    return Response(json.dumps(body), content_type="application/json")


@contextlib.contextmanager
def serve_proxy(proxy: Proxy, http: HTTPServer, config_home: Path) -> Iterator[None]:
    """Serves `proxy` on `http` and a WebSocket server of its own; `config_home` is to be
    XDG_CONFIG_HOME (where the library looks for `.portInUse` on Linux)."""
    with serve(proxy.pricing, "127.0.0.1", 0, subprotocols=[Subprotocol("tr_json2")]) as ws:
        proxy.ws_port = ws.socket.getsockname()[1]
        threading.Thread(target=ws.serve_forever, daemon=True).start()
        http.expect_request(re.compile(".*")).respond_with_handler(proxy.answer)
        announced = config_home / "Data API Proxy" / ".portInUse"
        announced.parent.mkdir(parents=True)
        announced.write_text(str(http.port))
        try:
            yield
        finally:
            ws.shutdown()
