"""JupyterLab's settings for editing this repository's notebooks (`make lab`; read nowhere else).

`python -m lib.notebooks lab` starts JupyterLab with `--config=scripts/jupyter_server_config.py`, read after
(so winning over) any configuration in the user's ~/.jupyter, and nothing is installed there:

* jupytext's contents manager: `notebooks/NN_name.py` and `NN_name.ipynb` both open as the same notebook, and
  saving writes both files of the pair (the pairing is `notebooks/jupytext.toml`). When the `.ipynb` on disk
  is newer than the `.py` and their cells differ (one was edited outside this lab), opening refuses with
  jupytext's message naming both files instead of dropping either edit.
* Notebooks are saved with the kernelspec the repository commits (the one `make sync` writes), whichever
  kernel ran them, so a save changes only what the user edited.
* The one kernel offered is the project's (`make lab` registers it inside the environment). It is offered
  under the name the committed notebooks carry, `python3`, so that opening one starts it without asking.
* `.py` files open as notebooks on a double click (settings in `scripts/jupyterlab-settings/`).
"""

from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

from lib.notebooks import COMMITTED_KERNELSPEC, PROJECT_KERNEL


class ProjectContentsManager(build_async_jupytext_contents_manager_class(AsyncLargeFileManager)):
    """jupytext's contents manager that keeps the committed kernelspec in every saved notebook."""

    async def save(self, model, path=""):
        if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
            model["content"].setdefault("metadata", {})["kernelspec"] = dict(COMMITTED_KERNELSPEC)
        return await super().save(model, path)


class ProjectKernelSpecManager(KernelSpecManager):
    """Offers the project's kernel alone, named `python3` (its display name says which it is)."""

    def find_kernel_specs(self):
        specs = super().find_kernel_specs()
        return {COMMITTED_KERNELSPEC["name"]: specs[PROJECT_KERNEL]} if PROJECT_KERNEL in specs else specs

    def get_kernel_spec(self, kernel_name):
        return super().get_kernel_spec(PROJECT_KERNEL if kernel_name == COMMITTED_KERNELSPEC["name"] else kernel_name)


c = get_config()  # noqa: F821 (defined by traitlets when it reads this file)
c.ServerApp.contents_manager_class = ProjectContentsManager
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port_retries = 0  # the launcher chose a free port and printed its URL: never move silently
c.ServerApp.kernel_spec_manager_class = ProjectKernelSpecManager
c.MultiKernelManager.default_kernel_name = COMMITTED_KERNELSPEC["name"]
c.ServerApp.allow_root = True  # containers and Colab run as root; the server listens on 127.0.0.1 with a token
# The environment is the project's (pyproject.toml): no extension installs from the lab, no calls home.
c.LabApp.extension_manager = "readonly"
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.app_settings_dir = str(Path(__file__).resolve().parent / "jupyterlab-settings")
