"""The notebooks run top to bottom (nbclient, a real kernel) against the demo workspace.

The workspace is built by the demo's own code path (``run_demo``) at the scaled-down size the
suite can afford (``size="small"``: a 40-item shop, tiny encoders, two epochs; the default
size takes minutes), and placed where ``make demo`` puts it: ``befa-workspace`` at the root of
a repository. The kernel starts in that repository's ``notebooks/`` folder with
``BEFA_VIZ_WORKSPACE`` unset, as a user who runs ``jupyter lab`` from ``notebooks/`` would.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["01_attribution_walkthrough.ipynb", "02_drift_omission_study.ipynb"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository root with ``pyproject.toml``, ``notebooks/`` and the demo workspace."""
    from befa_viz.demo import run_demo

    root = tmp_path_factory.mktemp("repo")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "notebooks").mkdir()
    run_demo(root / "befa-workspace", size="small", progress=False)
    return root


@pytest.fixture(scope="module")
def notebook_ws(repo: Path) -> Path:
    return repo / "befa-workspace"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "BEFA_VIZ_WORKSPACE" in code[0].source
    assert "explore.find_workspace(WORKSPACE)" in code[1].source
    # prose after the results: how to read them, and what a failed sanity check means
    prose = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "What a failed check means" in prose and "lower is better" in prose
    imports = [line.strip() for c in code for line in c.source.splitlines()
               if "befa_viz" in line and "import" in line]
    assert imports == ["from befa_viz import explore, pipeline, viz"]  # the public API only


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, repo, notebook_ws, monkeypatch):
    monkeypatch.delenv("BEFA_VIZ_WORKSPACE", raising=False)  # found from notebooks/ instead
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(repo / "notebooks")}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, [e.get("evalue") for e in errors]
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs if o.output_type == "stream")
    assert f"workspace: {notebook_ws}" in printed
    assert re.search(r"(without|with) adapter.*(pass|FAILS)", printed)  # the verdict line
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    # 01: the heatmap pair; 02: the histograms, the paired scatter and the worst item's pair
    assert len(images) >= (1 if name.startswith("01") else 3), "figures were not displayed"
    if name.startswith("01"):
        html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells
                       if c.cell_type == "code" for o in c.outputs)
        assert "befa-token" in html
        assert (notebook_ws / "reports" / "notebook-walkthrough").is_dir()


def test_kernel_is_this_interpreter(tmp_path):
    """The notebooks' kernel ("python3") runs the venv's Python, where befa_viz is installed."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys, befa_viz; print(sys.executable)")]
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = nb.cells[0].outputs[0]["text"].strip()
    assert os.path.samefile(out, sys.executable)


def test_find_workspace_from_notebooks_env_and_missing(repo, notebook_ws, tmp_path, monkeypatch):
    from befa_viz import explore
    from befa_viz.errors import DataError

    monkeypatch.delenv("BEFA_VIZ_WORKSPACE", raising=False)
    assert explore.find_workspace(start=repo / "notebooks").root == notebook_ws
    assert explore.find_workspace(start=repo).root == notebook_ws
    monkeypatch.setenv("BEFA_VIZ_WORKSPACE", str(tmp_path))
    assert explore.find_workspace(start=repo / "notebooks").root == tmp_path
    monkeypatch.setenv("BEFA_VIZ_WORKSPACE", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="BEFA_VIZ_WORKSPACE.*does not exist"):
        explore.find_workspace()
    monkeypatch.delenv("BEFA_VIZ_WORKSPACE")
    other = tmp_path / "proj"
    (other / "notebooks").mkdir(parents=True)
    (other / ".git").mkdir()
    # the search stops at the repository root: a befa-workspace above it is not used
    (tmp_path / "befa-workspace").mkdir()
    with pytest.raises(DataError, match="make demo"):
        explore.find_workspace(start=other / "notebooks")
