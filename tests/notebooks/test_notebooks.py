"""The notebooks run top to bottom (nbclient, a real kernel) against a toy workspace."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["01_attribution_walkthrough.ipynb", "02_drift_omission_study.ipynb"]


@pytest.fixture(scope="module")
def notebook_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from befa_viz.testing import toy_workspace

    return toy_workspace(tmp_path_factory.mktemp("notebook-ws")).root


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "BEFA_VIZ_WORKSPACE" in code[0].source
    imports = [line.strip() for c in code for line in c.source.splitlines()
               if "befa_viz" in line and "import" in line]
    assert imports == ["from befa_viz import pipeline, viz"]  # the public API only


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, notebook_ws, tmp_path, monkeypatch):
    monkeypatch.setenv("BEFA_VIZ_WORKSPACE", str(notebook_ws))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    # 01: the heatmap pair; 02: the histograms and the worst item's pair
    assert len(images) >= (1 if name.startswith("01") else 2), "figures were not displayed"
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
