"""Every notebook runs headless under papermill in the smoke preset, in order (the course runner)."""

import pytest

from etlib import course


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("course_smoke")
    return course.run_course("smoke", output_dir=out)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [p.name for p in course.discover()])
def test_notebook_runs_in_smoke(smoke_run, notebook):
    record = smoke_run["notebooks"][notebook[:2]]
    assert record["status"] == "ok", record.get("error")
    assert record["headline"], f"{notebook} recorded no headline figures"
