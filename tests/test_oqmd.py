"""The OQMD OPTIMADE client against a loopback server serving real-format pages."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pymatgen.core import Structure

from xrdbench.errors import SourceError
from xrdbench.sources import oqmd

FIXTURES = Path(__file__).parent / "data" / "oqmd"
PLACEHOLDER = "http://127.0.0.1:PORT"
ALL_IDS = ["oqmd-675045", "oqmd-675103", "oqmd-676211", "oqmd-1214558", "oqmd-677130", "oqmd-1389001",
           "oqmd-1389002"]  # oqmd-1302211 (species "X") is skipped


class FakeOqmd:
    """Serves tests/data/oqmd/page-<n>.json by ``page_offset``; ``faults[n]`` lists what the next
    requests for page n get instead ("500", "404", "truncate", "badjson", "slow"; "always500" sticks)."""

    def __init__(self):
        self.requests: list[tuple[int, dict]] = []
        self.faults: dict[int, list[str]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                index = int(query.get("page_offset", ["0"])[0]) // int(query["page_limit"][0])
                outer.requests.append((index, query))
                faults = outer.faults.get(index, [])
                fault = faults[0] if faults else None
                if fault and fault != "always500":
                    faults.pop(0)
                body = (FIXTURES / f"page-{index}.json").read_text().replace(PLACEHOLDER, outer.base).encode()
                try:
                    if fault in ("500", "always500", "404"):
                        self.send_error(int(fault[-3:]))
                        return
                    if fault == "slow":
                        time.sleep(0.5)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.api+json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2] if fault == "truncate"
                                     else b"{not json" + body[9:] if fault == "badjson" else body)
                except OSError:
                    pass  # the client gave up on a slow answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def pages_requested(self) -> list[int]:
        return [index for index, _ in self.requests]


@pytest.fixture
def server():
    fake = FakeOqmd()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def sleeps(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(oqmd, "sleep", slept.append)
    return slept


def options(server, **overrides):
    return {"endpoint": f"{server.base}/optimade/v1/structures", "page_size": 3, "timeout_s": 2.0,
            "max_retries": 3, "backoff_s": 0.01, **overrides}


def test_fetch_follows_every_page(server, sleeps, tmp_path, caplog):
    rows = oqmd.fetch(options(server), tmp_path, cache_dir=tmp_path / "cache", progress=True)

    assert server.pages_requested() == [0, 1, 2] and sleeps == []
    first_query = server.requests[0][1]
    assert first_query["filter"] == ["_oqmd_stability<=0.1"] and first_query["page_limit"] == ["3"]
    assert "_oqmd_stability" in first_query["response_fields"][0].split(",")
    assert [row["id"] for row in rows] == ALL_IDS
    assert "oqmd-1302211" in caplog.text
    by_id = {row["id"]: row for row in rows}
    assert by_id["oqmd-675045"]["formula"] == "NaCl" and by_id["oqmd-675045"]["n_sites"] == 2
    assert by_id["oqmd-675045"]["provenance"].startswith(f"{server.base}/optimade/v1/structures?filter=")
    assert by_id["oqmd-1389001"]["provenance"].endswith("page_offset=6")
    assert by_id["oqmd-677130"]["formula"] == "LiF"  # OQMD may send "species": []
    assert by_id["oqmd-675103"]["volume"] == pytest.approx(5.468 ** 3 / 4)
    disordered = Structure.from_file(tmp_path / by_id["oqmd-1389001"]["path"])
    assert disordered[0].species.as_dict() == {"Cu": 0.5, "Au": 0.5}
    vacancy = Structure.from_file(tmp_path / by_id["oqmd-1389002"]["path"])
    assert vacancy.composition["Fe"] == pytest.approx(0.9)
    assert all((tmp_path / row["path"]).is_file() for row in rows)
    assert sorted(p.name for p in (tmp_path / "cache" / "pages").iterdir()) == [
        "page-00000.json", "page-00001.json", "page-00002.json"]


def test_extra_filter_and_max_structures(server, sleeps, tmp_path):
    rows = oqmd.fetch(options(server, max_structures=4, max_hull_distance_ev=0.05, extra_filter="nelements<=2"),
                      tmp_path, progress=False)
    assert [row["id"] for row in rows] == ALL_IDS[:4]
    assert server.pages_requested() == [0, 1]
    assert server.requests[0][1]["filter"] == ["_oqmd_stability<=0.05 AND (nelements<=2)"]


@pytest.mark.parametrize("faults", [["500", "500"], ["truncate"], ["badjson"], ["slow"]])
def test_transient_failures_are_retried(server, sleeps, tmp_path, faults):
    server.faults[1] = list(faults)
    opts = options(server, timeout_s=0.2) if faults == ["slow"] else options(server)
    rows = oqmd.fetch(opts, tmp_path, progress=False)
    assert [row["id"] for row in rows] == ALL_IDS
    assert server.pages_requested() == [0] + [1] * (len(faults) + 1) + [2]
    assert sleeps == pytest.approx([0.01 * 2 ** attempt for attempt in range(len(faults))])


def test_not_found_fails_at_once(server, sleeps, tmp_path):
    server.faults[1] = ["404"]
    with pytest.raises(SourceError, match=r"page_offset=3.*HTTP 404"):
        oqmd.fetch(options(server), tmp_path, progress=False)
    assert server.pages_requested() == [0, 1] and sleeps == []


def test_persistent_failure_then_resume(server, sleeps, tmp_path):
    cache = tmp_path / "cache"
    server.faults[2] = ["always500"]
    with pytest.raises(SourceError, match=r"page_offset=6 after 4 attempts: HTTP 500"):
        oqmd.fetch(options(server), tmp_path, cache_dir=cache, progress=False)
    assert server.pages_requested() == [0, 1, 2, 2, 2, 2]
    assert sorted(p.name for p in (cache / "pages").iterdir()) == ["page-00000.json", "page-00001.json"]
    saved = json.loads((cache / "pages" / "page-00001.json").read_text())
    assert saved["url"].endswith("page_offset=3") and len(saved["body"]["data"]) == 3

    server.faults.clear()
    server.requests.clear()
    (cache / "pages" / ".page-00002.json.tmp-deadbeef").write_text('{"url": "half')  # an interrupted write
    rows = oqmd.fetch(options(server), tmp_path, cache_dir=cache, progress=False)
    assert server.pages_requested() == [2]
    assert [row["id"] for row in rows] == ALL_IDS

    server.requests.clear()  # a complete cache needs no request at all
    assert oqmd.fetch(options(server), tmp_path, cache_dir=cache, progress=False) == rows
    assert server.requests == []


def test_cache_of_another_query_is_discarded(server, sleeps, tmp_path):
    cache = tmp_path / "cache"
    oqmd.fetch(options(server), tmp_path, cache_dir=cache, progress=False)
    server.requests.clear()
    rows = oqmd.fetch(options(server, max_hull_distance_ev=0.2), tmp_path, cache_dir=cache, progress=False)
    assert server.pages_requested() == [0, 1, 2] and len(rows) == len(ALL_IDS)
    assert json.loads((cache / "pages" / "page-00000.json").read_text())["url"].count("0.2") == 1


def test_unknown_option_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="page_sise"):
        oqmd.fetch({"page_sise": 10}, tmp_path, progress=False)
