"""The walk-through notebook runs end to end on the bundled data (tiny backbone, tiny budget)."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_walkthrough_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NCPL_ROOT", str(ROOT))
    monkeypatch.setenv("NCPL_NOTEBOOK_BACKBONE", "tiny-decoder")
    notebook = nbformat.read(ROOT / "notebooks/walkthrough.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert (tmp_path / "walkthrough-model" / "model.safetensors").exists() and (tmp_path / "parity.png").exists()
    assert (tmp_path / "landscape.png").exists() and (tmp_path / "curve.png").exists()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
