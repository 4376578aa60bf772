import json

import pytest

from etlib import course


def test_committed_notebooks_have_no_outputs():
    notebooks = course.discover()
    assert notebooks, "no numbered notebooks found"
    dirty = [p.name for p in notebooks if course.notebook_has_outputs(p)]
    assert not dirty, f"strip them with `python -m etlib.course --strip`: {dirty}"


def test_every_notebook_has_a_parameters_cell():
    for path in course.discover():
        nb = json.loads(path.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name
        src = "".join(tagged[0]["source"])
        for name in ("preset", "subject", "output_dir", "device"):
            assert f"{name} =" in src, (path.name, name)


def test_strip_outputs(tmp_path):
    nb = {
        "cells": [{"cell_type": "code", "source": "1", "outputs": [{"output_type": "stream"}], "execution_count": 3}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    p = tmp_path / "00_x.ipynb"
    p.write_text(json.dumps(nb))
    assert course.notebook_has_outputs(p)
    assert course.strip_outputs(p)
    assert not course.notebook_has_outputs(p)
    assert not course.strip_outputs(p)


def test_discover_only_and_unknown_numbers():
    first = course.discover()[0]
    assert course.discover([first.name[:2]]) == [first]
    with pytest.raises(ValueError, match="no notebook numbered 99"):
        course.discover(["99"])


def test_record_headline_converts_numpy(tmp_path):
    import numpy as np

    out = course.record_headline(tmp_path, "05", psnr=np.float32(31.5), n=np.int64(3))
    assert out == {"psnr": 31.5, "n": 3.0}
    assert json.loads((tmp_path / "headlines" / "05.json").read_text()) == out


def test_notebook_context_rejects_bad_device(tmp_path):
    with pytest.raises(ValueError, match="device"):
        course.NotebookContext("smoke", output_dir=tmp_path, device="tpu")
    ctx = course.NotebookContext("smoke", output_dir=tmp_path, device="cpu")
    assert ctx.preset.name == "smoke" and ctx.path("a", "b.txt").parent.is_dir()
