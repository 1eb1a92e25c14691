"""docs/protocol.md lists every HTTP endpoint the relay serves, and nothing it does not."""

from __future__ import annotations

from pathlib import Path

from relay.http.app import create_app
from relay.settings import Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
SECTION = "## The relay's HTTP API"


def _documented() -> set[tuple[str, str]]:
    body = DOC.split(SECTION)[1].split("\n## ")[0]
    out = set()
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in ("GET", "POST", "PUT", "DELETE"):
            path = cells[1].strip("`").replace("{s}", "{share}").replace("{b}", "{block}")
            out.add((cells[0], path))
    return out


def test_every_relay_endpoint_is_in_the_http_table(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served == _documented()
