"""Every chapter runs opened alone, as Colab opens it, and its stored outputs hold on
another CPU.

Each notebook is copied alone into an empty folder and run under nbval in a kernel whose
``google.colab`` is importable and imported (so the setup cell installs the package, as
on Colab) and whose Python is a throwaway environment layered over this one (torch and
the rest already there, as Colab has them, but no microgpt). git's
``url.<clone>.insteadOf`` points the setup cell's GitHub URL at a local clone of this
working tree, so the install is the real one, non-editable and offline. The recorded
results come from a local HTTP server through ``MICROGPT_RESULTS_URL``; the datasets
from ``MICROGPT_DATA``.

The kernel runs with other CPU kernels than the machine's own (``OTHER_CPU``: ATen's
portable code instead of AVX2/AVX-512, oneDNN and MKL without AVX, so no bf16
instructions either), and nbval compares every output with the stored one: the outputs a
reader's CPU would print differently show up here, on any machine. ``pytest --nbval
book/`` checks the same outputs with this CPU's own kernels. Two notebooks run at a
time, beside the other tests, so their OpenMP threads wait passively (``SHARED_CORES``).
"""

import http.server
import json
import os
import shutil
import site
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "book").glob("*.ipynb"))
REPOSITORY = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
# the opened-alone check cell writes the imported package's path here
WHERE = "microgpt_file.txt"
CHECK_CELL = (
    f"import microgpt\nwith open({WHERE!r}, 'w') as f:\n    f.write(microgpt.__file__)"
)
OFFLINE_AGAIN = (
    "00_intro"  # reads a recorded benchmark; run a second time with the server gone
)
# The code paths of a CPU without AVX2, AVX-512 or bf16 instructions, on any x86
# machine.
OTHER_CPU = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
}
# Two notebooks and the other tests share the cores: an OpenMP thread that waits at a
# barrier sleeps instead of spinning on a core another process needs (chapter 13, which
# steps on all threads, took 392 s here spinning and 274 s sleeping).
SHARED_CORES = {"OMP_WAIT_POLICY": "PASSIVE"}
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request."""

    def log_message(self, *args) -> None:
        """No log."""


def serve(folder: Path) -> http.server.ThreadingHTTPServer:
    """A local HTTP server for ``folder``, running in a thread."""
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(folder))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def dead_url() -> str:
    """A URL on a local port where nothing listens: no network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def clone_of_working_tree(dest: Path) -> Path:
    """A git repository holding what ``pip install git+...`` builds: the package as it
    is in this working tree.
    """
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(
        REPO / "microgpt",
        dest / "microgpt",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    git = [
        "git",
        "-C",
        str(dest),
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.com",
    ]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return dest


def throwaway_python(root: Path, name: str) -> Path:
    """A venv with this environment's packages (torch, ipykernel, ...) underneath it,
    and a kernel spec for it.
    """
    venv = root / "venvs" / name
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    own = subprocess.run(
        [
            str(python),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # plain paths: no .pth run
    (Path(own) / "_underneath.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    spec = root / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    str(python),
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": name,
                "language": "python",
            }
        )
    )
    return venv


def colab_stub(root: Path) -> Path:
    """An IPython profile that makes ``google.colab`` importable and imports it when a
    kernel starts.
    """
    stub = root / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stands in for Colab\'s module in tests."""\n')
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text(
        f"import sys\nsys.path.append({str(root / 'stub')!r})\nimport google.colab\n"
    )
    return root / "ipython"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, data_dir):
    """The clone, git's URL mapping, the Colab stub, the results server and the
    environment variables.
    """
    root = tmp_path_factory.mktemp("alone")
    clone = clone_of_working_tree(root / "clone")
    gitconfig = root / "gitconfig"
    gitconfig.write_text(f'[url "{clone}"]\n\tinsteadOf = {REPOSITORY}\n')
    httpd = serve(REPO / "book" / "results")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PIP_", "JUPYTER", "VIRTUAL_ENV"))
    }
    env.update(
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        PIP_NO_INDEX="1",
        PIP_NO_BUILD_ISOLATION="0",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        IPYTHONDIR=str(colab_stub(root)),
        JUPYTER_PATH=str(root / "jupyter"),
        MICROGPT_DATA=str(data_dir),
        MICROGPT_DEVICE="cpu",
        PYTHONHASHSEED="0",
        MICROGPT_RESULTS_URL=f"http://127.0.0.1:{httpd.server_address[1]}",
    )
    yield root, env
    httpd.shutdown()
    httpd.server_close()


def run_alone(
    root: Path, env: dict, notebook: Path, name: str, compare: bool = True, **overrides
) -> dict:
    """Copy ``notebook`` alone into an empty folder and check it there with nbval; what
    happened.

    With ``compare`` every output must equal the stored one; without, every cell must
    run.
    """
    venv = throwaway_python(root, name)
    work = root / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    nb = json.loads(notebook.read_text())
    nb["cells"].append(
        {
            "id": "opened-alone-check",
            "cell_type": "code",
            "metadata": {},
            "source": CHECK_CELL,
            "outputs": [],
            "execution_count": None,
        }
    )
    (work / notebook.name).write_text(json.dumps(nb))
    env = {
        **env,
        "MICROGPT_CACHE": str(root / "cache" / notebook.stem),
        "PATH": f"{venv / 'bin'}:{env['PATH']}",
        **OTHER_CPU,
        **SHARED_CORES,
        **overrides,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval" if compare else "--nbval-lax",
            notebook.name,
            "--nbval-kernel-name",
            name,
            "--nbval-sanitize-with",
            str(SANITIZE),
            "--nbval-cell-timeout",
            "600",
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    where = (work / WHERE).read_text() if (work / WHERE).exists() else None
    return {
        "returncode": result.returncode,
        "report": result.stdout[-6000:] + result.stderr[-2000:],
        "microgpt": where,
        "venv": venv,
    }


def recorded_seconds(notebook: Path) -> float:
    """How long the notebook's stored run took: from its first cell's start to its last
    cell's end, as the cells' execution timestamps record them (0 without them).
    """
    times = [
        cell["metadata"]["execution"]
        for cell in json.loads(notebook.read_text())["cells"]
        if "shell.execute_reply" in cell.get("metadata", {}).get("execution", {})
    ]
    if not times:
        return 0.0
    first = times[0].get("iopub.execute_input", times[0]["shell.execute_reply"])
    return (as_time(times[-1]["shell.execute_reply"]) - as_time(first)).total_seconds()


def as_time(stamp: str) -> datetime:
    """A Jupyter timestamp such as ``2026-12-07T20:01:02.345678Z``."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def runs(sandbox):
    """Every notebook run alone and compared, two at a time, with the recorded results
    beside it (a download, or a look-up of one never recorded, prints a line the stored
    outputs do not have); beside them, the fetch itself, online then offline, with
    nothing beside the notebook.
    """
    root, env = sandbox
    for nb in NOTEBOOKS:
        shutil.copytree(REPO / "book" / "results", root / "work" / nb.stem / "results")

    def fetch_then_offline() -> dict:
        again = REPO / "book" / f"{OFFLINE_AGAIN}.ipynb"
        cache = {"MICROGPT_CACHE": str(root / "cache" / "fetch")}
        fetch = run_alone(root, env, again, "fetch", compare=False, **cache)
        offline = run_alone(
            root,
            env,
            again,
            "offline",
            compare=False,
            MICROGPT_RESULTS_URL=dead_url(),
            **cache,
        )
        return {"fetch": fetch, "offline": offline}

    # the longest first, so that the two at a time finish close together
    longest_first = sorted(NOTEBOOKS, key=recorded_seconds, reverse=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        fetched = pool.submit(fetch_then_offline)
        futures = {
            nb.stem: pool.submit(run_alone, root, env, nb, nb.stem)
            for nb in longest_first
        }
        done = {stem: future.result() for stem, future in futures.items()}
        done.update(fetched.result())
    return done


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_opened_alone(runs, notebook):
    run = runs[notebook.stem]
    assert run["returncode"] == 0, (
        f"{notebook.name} failed opened alone, on other CPU kernels:\n{run['report']}"
    )
    assert run["microgpt"], (
        f"{notebook.name} never reached its last cell:\n{run['report']}"
    )
    installed = Path(run["microgpt"])
    assert installed.is_relative_to(run["venv"]), (
        f"microgpt came from {installed}, not the setup cell's install"
    )
    assert not installed.is_relative_to(REPO)


def test_a_fetched_result_is_there_offline_afterwards(runs, sandbox):
    assert runs["fetch"]["returncode"] == 0, (
        f"{OFFLINE_AGAIN} failed fetching its results:\n{runs['fetch']['report']}"
    )
    fetched = sorted((sandbox[0] / "cache" / "fetch" / "results").iterdir())
    assert fetched, (
        f"{OFFLINE_AGAIN} fetched no recorded result: "
        "choose another notebook for OFFLINE_AGAIN"
    )
    run = runs["offline"]
    assert run["returncode"] == 0, (
        f"{OFFLINE_AGAIN} failed offline after fetching its results once:\n"
        f"{run['report']}"
    )
