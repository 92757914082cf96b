"""Recorded results: found next to the notebook, in the cache, or downloaded once from a
local HTTP server.
"""

import http.server
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
import yaml

from microgpt import data
from microgpt.book import BRANCH, REPOSITORY, ResultsError, results_file, results_url

REPO = Path(__file__).resolve().parent.parent
BENCH = b'{"suite": "names"}\n'


@pytest.fixture
def server(tmp_path):
    """A local HTTP server serving a results folder with bench.json and
    sweep/lr.jsonl.
    """
    root = tmp_path / "www"
    (root / "sweep").mkdir(parents=True)
    (root / "bench.json").write_bytes(BENCH)
    (root / "sweep" / "lr.jsonl").write_bytes(b'{"step": 1}\n')
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def alone(tmp_path, monkeypatch):
    """An empty working folder (a notebook opened alone) and a private cache; returns
    the cache.
    """
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MICROGPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def dead_url() -> str:
    """A URL on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/results"


def test_the_package_knows_the_books_repository():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert REPOSITORY == config["repository"]["url"]
    assert BRANCH == config["repository"]["branch"]


def test_default_url_is_the_repositorys_raw_results(monkeypatch):
    monkeypatch.delenv("MICROGPT_RESULTS_URL", raising=False)
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    assert (
        results_url()
        == f"https://raw.githubusercontent.com/{owner_repo}/main/book/results"
    )


def test_next_to_the_notebook_wins(alone, monkeypatch):
    monkeypatch.setenv("MICROGPT_RESULTS_URL", dead_url())
    (alone.parent / "work" / "results").mkdir()
    (alone.parent / "work" / "results" / "bench.json").write_bytes(b"local")
    assert results_file("bench.json").read_bytes() == b"local"
    assert not alone.exists()


def test_downloaded_once_then_offline(alone, server, monkeypatch):
    monkeypatch.setenv("MICROGPT_RESULTS_URL", server)
    path = results_file("bench.json")
    assert path == alone / "results" / "bench.json" and path.read_bytes() == BENCH
    assert results_file("sweep/lr.jsonl").read_bytes() == b'{"step": 1}\n'
    monkeypatch.setenv("MICROGPT_RESULTS_URL", dead_url())
    assert results_file("bench.json").read_bytes() == BENCH


def test_offline_with_nothing_cached_is_one_clear_line(alone, monkeypatch):
    monkeypatch.setenv("MICROGPT_RESULTS_URL", dead_url())
    with pytest.raises(ResultsError) as err:
        results_file("bench.json")
    message = str(err.value)
    assert (
        "\n" not in message
        and "bench.json" in message
        and "could not download" in message
    )
    assert "Check your network" in message
    assert not (alone / "results" / "bench.json").exists()


def test_missing_on_the_server_caches_nothing(alone, server, monkeypatch):
    monkeypatch.setenv("MICROGPT_RESULTS_URL", server)
    with pytest.raises(ResultsError, match="404"):
        results_file("absent.json")
    assert list((alone / "results").iterdir()) == []


@pytest.mark.parametrize("name", ["", "../secrets.txt", "/etc/passwd", "a/../../b"])
def test_names_outside_the_results_folder_are_refused(alone, name):
    with pytest.raises(ResultsError, match="not the name of a recorded result"):
        results_file(name)


def test_every_recorded_result_is_found_in_the_repository(monkeypatch):
    monkeypatch.chdir(REPO / "book")
    for path in sorted((REPO / "book" / "results").rglob("*")):
        if path.is_file():
            assert (
                results_file(path.relative_to(REPO / "book" / "results").as_posix())
                == path
            )


def test_an_unrecorded_optional_result_is_none(alone, server, monkeypatch):
    monkeypatch.setenv("MICROGPT_RESULTS_URL", server)
    # 404 from the server
    assert results_file("bench_cuda.json", missing_ok=True) is None
    assert results_file("bench.json", missing_ok=True).read_bytes() == BENCH
    monkeypatch.setenv("MICROGPT_RESULTS_URL", dead_url())
    # offline is not "not recorded"
    with pytest.raises(ResultsError, match="could not download"):
        results_file("other.json", missing_ok=True)


def test_not_recorded_is_told_by_the_http_status(alone, monkeypatch):
    def refused(url, dest, **kw):
        raise data.DataError("could not download (HTTP Error 404: Not Found)", 404)

    monkeypatch.setattr("microgpt.book.download", refused)
    assert results_file("bench_cuda.json", missing_ok=True) is None
    with pytest.raises(ResultsError, match="HTTP Error 404"):
        results_file("bench_cuda.json")


def test_a_results_folder_beside_the_notebook_decides_what_was_recorded(
    alone, monkeypatch
):
    monkeypatch.setenv("MICROGPT_RESULTS_URL", dead_url())
    (alone.parent / "work" / "results").mkdir()
    # no network asked
    assert results_file("bench_cuda.json", missing_ok=True) is None
