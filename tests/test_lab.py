"""Editing the notebooks interactively (`make lab`), tested as a user would: a real Jupyter server started
by the same launcher as `make lab`, driven through its REST API, and a kernel with the project's kernelspec.

Each test starts its processes on 127.0.0.1 (random port, random token) with a time limit, and stops them
in ``finally``. They skip only when JupyterLab is not installed (`make test` and `make lab` install it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from lib import notebooks, paths

pytest.importorskip("jupyterlab", reason="JupyterLab is not installed: the lab extra (make lab; make test installs it)")

STARTUP_SECONDS = 60
MARK = "Added through the lab's contents API by tests/test_lab.py."


def _listening_socket() -> socket.socket:
    """A socket bound and listening on a free port of 127.0.0.1 (a port that is 'taken')."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (the server and any kernel it started), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Lab:
    def __init__(self, url: str, token: str, log: Path):
        self.url, self.token, self.log = url.rstrip("/"), token, log

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")


@contextmanager
def lab_server(root: Path, port: int, log: Path):
    """`python -m lib.notebooks lab` (what `make lab` runs) on ``root``; yields a :class:`Lab` once it answers."""
    token = secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_TOKEN=token,
               PYTHONPATH=os.pathsep.join(p for p in (str(paths.ROOT), os.environ.get("PYTHONPATH")) if p))
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lib.notebooks", "lab", "--port", str(port), "--root", str(root), "--no-browser"],
            cwd=paths.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            text = log.read_text()
            url = next((line.split("/lab?token=")[0] for line in text.splitlines()
                        if "http://127.0.0.1:" in line and "/lab?token=" in line), None)
            if url:
                lab = Lab(url.strip(), token, log)
                try:
                    lab.request("GET", "/api/status")
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the lab did not answer within {STARTUP_SECONDS} s "
                                     f"(exit code {process.poll()}); its output:\n{text[-3000:]}")
            time.sleep(0.5)
        yield lab
    finally:
        _stop(process)


def _copy_notebooks(target: Path) -> Path:
    target.mkdir()
    for source in notebooks.notebook_sources():
        for path in (source, source.with_suffix(".ipynb")):
            shutil.copy2(path, target / path.name)
    shutil.copy2(paths.NOTEBOOKS / "jupytext.toml", target / "jupytext.toml")
    return target


def test_lab_saves_both_files_of_a_pair_and_refuses_to_drop_an_edit(tmp_path):
    folder = _copy_notebooks(tmp_path / "notebooks")
    py, ipynb = folder / "01_data_audit.py", folder / "01_data_audit.ipynb"
    py_before, ipynb_before = py.read_text(), ipynb.read_text()
    taken = _listening_socket()  # `make lab` on a taken port picks another and says so
    port = taken.getsockname()[1]
    try:
        with lab_server(folder, port, tmp_path / "lab.log") as lab:
            log = lab.log.read_text()
            assert f"port {port} on 127.0.0.1 is taken; using port" in log
            assert not lab.url.endswith(f":{port}")

            # One kernel, the project's, offered under the name the committed notebooks carry (no dialog).
            specs = lab.request("GET", "/api/kernelspecs")
            assert specs["default"] == "python3" and list(specs["kernelspecs"]) == ["python3"]
            spec = specs["kernelspecs"]["python3"]["spec"]
            assert spec["display_name"].startswith("angular-margin-fairness (")
            assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()

            model = lab.request("GET", "/api/contents/01_data_audit.py?type=notebook&content=1")
            assert model["type"] == "notebook"  # the percent script opens as a notebook
            notebook = model["content"]
            import jupytext

            expected = [(c.cell_type, c.source) for c in jupytext.read(py).cells]
            assert [(c["cell_type"], c["source"]) for c in notebook["cells"]] == expected
            notebook["cells"].append({"cell_type": "markdown", "id": "added-by-test", "metadata": {}, "source": MARK})
            # as if the project's kernel had run it: the committed kernelspec is saved all the same
            notebook["metadata"]["kernelspec"] = {"name": notebooks.PROJECT_KERNEL, "language": "python",
                                                  "display_name": "angular-margin-fairness (.venv)"}
            lab.request("PUT", "/api/contents/01_data_audit.py", {"type": "notebook", "format": "json",
                                                                  "content": notebook})
            py_after, ipynb_after = py.read_text(), ipynb.read_text()
            assert py_after != py_before and ipynb_after != ipynb_before
            assert f"# {MARK}" in py_after
            saved = json.loads(ipynb_after)
            assert "".join(saved["cells"][-1]["source"]) == MARK
            assert saved["metadata"]["kernelspec"] == notebooks.COMMITTED_KERNELSPEC
            header = py_after.split("\n# ---\n")[0]
            assert "#   kernelspec:\n#     display_name: Python 3\n#     language: python\n#     name: python3" in header
            assert notebooks.check_sync(folder) == []  # what `make check-sync` runs, on the copy

            # The .py changed on disk after the lab read it: its timestamp moves, which the lab compares
            # before saving ("File Changed ... overwrite or revert"), so neither edit is dropped silently.
            seen = lab.request("GET", "/api/contents/01_data_audit.py?content=0&type=notebook")["last_modified"]
            time.sleep(1.1)
            py.write_text(py_after.replace(MARK, MARK + " Edited on disk."))
            now = lab.request("GET", "/api/contents/01_data_audit.py?content=0&type=notebook")["last_modified"]
            assert now > seen

            # The .ipynb edited outside jupytext (newer, other cells): opening refuses with jupytext's message.
            outside = json.loads(ipynb.read_text())
            outside["cells"].append({"cell_type": "markdown", "id": "outside", "metadata": {}, "source": "Outside."})
            ipynb.write_text(json.dumps(outside))
            later = time.time() + 60
            os.utime(ipynb, (later, later))
            py_disk, ipynb_disk = py.read_text(), ipynb.read_text()
            with pytest.raises(urllib.error.HTTPError) as refused:
                lab.request("GET", "/api/contents/01_data_audit.py?type=notebook&content=1")
            message = refused.value.read().decode()
            assert refused.value.code == 400
            assert "is more recent than" in message and "01_data_audit.py" in message and "01_data_audit.ipynb" in message
            assert (py.read_text(), ipynb.read_text()) == (py_disk, ipynb_disk)  # both edits still on disk
    finally:
        taken.close()
    assert "Traceback" not in (tmp_path / "lab.log").read_text().split("received signal")[0]


def _code_cells(stem: str) -> list[str]:
    import jupytext

    return [cell.source for cell in jupytext.read(paths.NOTEBOOKS / f"{stem}.py").cells if cell.cell_type == "code"]


def test_project_kernel_runs_each_notebooks_parameter_check_under_the_smoke_profile():
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager
    from papermill.translators import PythonTranslator

    try:
        spec = KernelSpecManager().get_kernel_spec(notebooks.PROJECT_KERNEL)
    except NoSuchKernel:
        pytest.fail(f"the project's kernel {notebooks.PROJECT_KERNEL!r} is not registered for {sys.executable}: "
                    f"`make lab` or `make test` registers it (ipykernel install --sys-prefix)")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve(), spec.argv  # this environment's Python
    env = dict(os.environ, **notebooks.KERNEL_ENV,
               PYTHONPATH=os.pathsep.join(p for p in (str(paths.ROOT), os.environ.get("PYTHONPATH")) if p))
    manager = KernelManager(kernel_name=notebooks.PROJECT_KERNEL)
    manager.start_kernel(cwd=str(paths.NOTEBOOKS), env=env)
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=STARTUP_SECONDS)
        for source in notebooks.notebook_sources():
            stem = source.stem
            parameters_cell, check_cell = _code_cells(stem)[:2]
            assert "parameters.validate(" in check_cell, f"{stem}: the first code cell is not the parameter check"
            smoke = PythonTranslator.codify(notebooks.notebook_parameters("smoke", stem))  # what papermill injects
            outputs = []
            client.execute_interactive("%reset -f", timeout=30)
            reply = client.execute_interactive("\n".join((parameters_cell, smoke, check_cell)), timeout=120,
                                               output_hook=outputs.append)
            errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
            assert reply["content"]["status"] == "ok", f"{stem}: {errors or reply['content']}"
            printed = []
            client.execute_interactive("print(profile, synthetic_preset, 'parameters' in dir())", timeout=30,
                                       output_hook=printed.append)
            text = "".join(m["content"].get("text", "") for m in printed if m["msg_type"] == "stream")
            assert text.split() == ["smoke", "smoke", "True"], f"{stem}: {text!r}"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert not manager.is_alive()


@pytest.mark.parametrize("stem", [source.stem for source in notebooks.notebook_sources()])
def test_a_kernel_without_lib_says_which_kernel_to_choose(stem, tmp_path):
    """The parameter check run by a Python that cannot import `lib` (another environment's kernel; here
    the same interpreter with -I -S: no site-packages, no PYTHONPATH) names the project's kernel."""
    check_cell = _code_cells(stem)[1]
    result = subprocess.run([sys.executable, "-I", "-S", "-c", check_cell], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: This kernel (") and "'angular-margin-fairness'" in last, result.stderr
    assert "Change Kernel" in last and "ModuleNotFoundError" not in result.stderr
