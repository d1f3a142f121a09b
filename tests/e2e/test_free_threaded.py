"""Free-threaded builds (3.13t+): with the GIL disabled there is no GIL
traffic, and gilstat says so in one line instead of printing zero tables;
with PYTHON_GIL=1 the regular suite runs (see conftest's `gilstat`)."""
import pytest

from conftest import workload


@pytest.fixture(scope="module")
def free_threaded(python):
    if not python.free_threaded:
        pytest.skip("not a free-threaded build (%s)" % python.version)
    return python


def test_gil_disabled_is_said_not_tabulated(gilstat, free_threaded):
    r = gilstat("run", "--", free_threaded.path, workload("spin.py"), "--threads", "2",
                "--seconds", "0.5", env={"PYTHON_GIL": "0"})
    assert r.returncode == 0, r.describe()
    err = r.stderr_text
    assert "GIL disabled (free-threaded build)" in err, r.describe()
    assert "hint: set PYTHON_GIL=1" in err, r.describe()
    assert "THREAD" not in err, "zero tables were printed: " + r.describe()
    assert r.program_json()["threads"], r.describe()  # the program ran normally


def test_gil_disabled_json_has_no_traffic(gilstat, free_threaded):
    r = gilstat("run", "--json", "--", free_threaded.path, workload("spin.py"), "--threads",
                "2", "--seconds", "0.5", env={"PYTHON_GIL": "0"})
    assert r.returncode == 0, r.describe()
    rep = r.report()
    assert rep["python"]["free_threaded"] is True
    assert sum(g["acquisitions"] for g in rep["gils"]) == 0, r.describe()


def test_gil_enabled_is_measured(gilstat, free_threaded):
    r = gilstat("run", "--json", "--", free_threaded.path, workload("spin.py"), "--threads",
                "2", "--seconds", "0.8", env={"PYTHON_GIL": "1"})
    assert r.returncode == 0, r.describe()
    rep = r.report()
    assert rep["python"]["free_threaded"] is True
    g = rep["gils"][0]
    assert g["switches"] == g["switch_number_delta"] > 0, r.describe()
