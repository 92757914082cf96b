"""Finding, downloading, verifying and caching the datasets, against a local HTTP
server.
"""

import hashlib
import http.server
import socket
import threading
from functools import partial

import pytest

from microgpt import data

GOOD = b"emma\nolivia\n\nava\n"


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving good.txt and bad.txt from a temp
    folder.
    """
    root = tmp_path / "www"
    root.mkdir()
    (root / "good.txt").write_bytes(GOOD)
    (root / "bad.txt").write_bytes(GOOD.replace(b"ava", b"eve"))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """No offline folder, a private cache; returns the cache folder."""
    monkeypatch.delenv("MICROGPT_DATA", raising=False)
    monkeypatch.setenv("MICROGPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def use(monkeypatch, url: str, content: bytes = GOOD) -> None:
    """Point the names dataset at ``url`` with the checksum of ``content``."""
    digest = hashlib.sha256(content).hexdigest()
    monkeypatch.setitem(data.DATASETS, "names", data.Dataset("names.txt", url, digest))


def dead_url() -> str:
    """A URL on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/names.txt"


def test_download_verifies_and_caches(server, env, monkeypatch):
    use(monkeypatch, f"{server}/good.txt")
    path = data.fetch("names")
    assert path == env / "names.txt"
    assert path.read_bytes() == GOOD
    assert data.load_names() == ["emma", "olivia", "ava"]
    assert sorted(p.name for p in env.iterdir()) == ["names.txt"]


def test_cache_hit_needs_no_network(server, env, monkeypatch):
    use(monkeypatch, f"{server}/good.txt")
    data.fetch("names")
    use(monkeypatch, dead_url())
    assert data.fetch("names").read_bytes() == GOOD


def test_bad_checksum_is_an_error_and_caches_nothing(server, env, monkeypatch):
    use(monkeypatch, f"{server}/bad.txt", content=GOOD)
    with pytest.raises(data.DataError) as err:
        data.fetch("names")
    message = str(err.value)
    assert (
        "names.txt" in message and "SHA-256" in message and "MICROGPT_DATA" in message
    )
    assert str(env) in message
    assert list(env.iterdir()) == []


def test_server_down_is_an_error_naming_the_fix(env, monkeypatch):
    use(monkeypatch, dead_url())
    with pytest.raises(
        data.DataError, match="could not download names.txt.*MICROGPT_DATA"
    ):
        data.fetch("names")
    assert not (env / "names.txt").exists()


def test_missing_file_on_server(server, env, monkeypatch):
    use(monkeypatch, f"{server}/absent.txt")
    with pytest.raises(data.DataError, match="404") as err:
        data.fetch("names")
    assert err.value.status == 404


def test_only_a_refusing_server_gives_a_status(server, env, monkeypatch):
    use(monkeypatch, dead_url())
    with pytest.raises(data.DataError) as offline:
        data.fetch("names")
    use(monkeypatch, f"{server}/bad.txt", content=GOOD)
    with pytest.raises(data.DataError) as corrupt:
        data.fetch("names")
    assert offline.value.status is None and corrupt.value.status is None


def test_poisoned_cache_is_replaced(server, env, monkeypatch):
    use(monkeypatch, f"{server}/good.txt")
    env.mkdir()
    (env / "names.txt").write_bytes(b"tampered\n")
    assert data.fetch("names").read_bytes() == GOOD


def test_offline_folder_comes_first_and_is_checked(tmp_path, env, monkeypatch):
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "names.txt").write_bytes(GOOD)
    use(monkeypatch, dead_url())
    monkeypatch.setenv("MICROGPT_DATA", str(offline))
    assert data.fetch("names") == offline / "names.txt"
    (offline / "names.txt").write_bytes(b"wrong\n")
    with pytest.raises(data.DataError, match="MICROGPT_DATA"):
        data.fetch("names")


def test_offline_folder_without_the_file_falls_back(tmp_path, env, monkeypatch, server):
    monkeypatch.setenv("MICROGPT_DATA", str(tmp_path))
    use(monkeypatch, f"{server}/good.txt")
    assert data.fetch("names") == env / "names.txt"


def test_unknown_dataset():
    with pytest.raises(data.DataError, match="unknown dataset 'poems'"):
        data.fetch("poems")


def test_own_data_file(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("  zed \n\nyan\n")
    assert data.load_names(own) == ["zed", "yan"]
    assert data.load_shakespeare(own) == "  zed \n\nyan\n"
    with pytest.raises(data.DataError, match="cannot read data file"):
        data.load_names(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(data.DataError, match="no non-empty lines"):
        data.load_names(tmp_path / "empty.txt")


def test_the_real_datasets(data_dir):
    names = data.load_names()
    assert len(names) == 32033 and names[0] == "emma"
    text = data.load_shakespeare()
    assert len(text) == 1115394 and len(set(text)) == 65
