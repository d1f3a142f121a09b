"""Real services, not demos: a thread-per-request HTTP server under a client in another
process, and a ThreadPoolExecutor service, measured by `gilstat run` and by
`gilstat record --pid`. Every request thread keeps its `threading` name, the report
stays exact, and it stays readable (groups instead of thousands of rows).

Heavy tier: Debian 3.11, pyenv 3.12, Debian 3.15 (tests/e2e/CMakeLists.txt).
"""
import sys
import time

from attach_support import Target, load_report
from test_many_threads import held_by_name
from test_run import check_invariants, run_workload

CLIENT = sys.executable  # the client runs under pytest's own interpreter: not measured
SECONDS = 3.0
NAMED_SHARE = 0.99


def check_named(report, truth, ctx):
    """>= 99 % of the held time of the program's named threads is in rows with their
    names (found by tid)."""
    named, total, wrong = held_by_name(report, truth)
    assert total > 0, ctx
    assert named >= NAMED_SHARE * total, (
        "%.2f %% of the request threads' held time is in rows with their names; "
        "wrong: %s\n%s" % (100 * named / total, wrong[:10], ctx))


def check_profile_lead(report, ctx):
    """The held-time profile: the handler's own computing function leads it."""
    lead = report["gil_profile"]["functions"][0]
    assert lead["function"] == "compute_total" and lead["file"].endswith("http_service.py"), (
        report["gil_profile"]["functions"][:5], ctx)


def test_http_service_run(gilstat, heavy):
    result = run_workload(gilstat, heavy, "http_service.py", "--client", CLIENT,
                          "--seconds", SECONDS, timeout=60)
    report, truth = result.report(), result.program_json()
    ctx = result.describe()
    check_invariants(report, result)
    assert report["drops"] == 0, ctx
    assert truth["requests"] > 100 and len(truth["threads"]) == truth["requests"], truth
    check_named(report, truth, ctx)
    check_profile_lead(report, ctx)


def test_http_service_record_pid(gilstat, heavy, tmp_path):
    path = str(tmp_path / "http.gilstat")
    with Target(heavy, "http_service.py", "--client", CLIENT, "--seconds", SECONDS,
                "--ready") as target:
        target.expect("ready")
        time.sleep(0.3)
        result = gilstat("record", "--pid", target.pid, "-o", path, "--duration", 2)
        truth = target.finish(stop=False, timeout=30)
        ctx = result.describe() + "\n" + target.describe()
    assert result.returncode == 0, ctx
    report = load_report(gilstat, path)
    check_invariants(report, result)
    assert report["drops"] == 0, ctx
    # Only the threads that ran inside the window have rows.
    check_named(report, truth, ctx)
    request_rows = [t for t in report["threads"] if "process_request_thread" in t["name"]
                    or (heavy.minor < (3, 10) and t["name"].startswith("Thread-"))]
    # ~1,000 in an idle 2 s window; a loaded machine serves fewer (not a gilstat bound).
    assert len(request_rows) >= 20, (len(request_rows), ctx)
    check_profile_lead(report, ctx)


def test_thread_pool_service_run(gilstat, heavy):
    result = run_workload(gilstat, heavy, "pool_service.py", "--seconds", 2, timeout=60)
    report, truth = result.report(), result.program_json()
    ctx = result.describe()
    check_invariants(report, result)
    assert report["drops"] == 0, ctx
    check_named(report, truth, ctx)
    workers = [t for t in report["threads"] if t["name"].startswith("ThreadPoolExecutor-")]
    assert len(workers) == len(truth["threads"]), ctx
