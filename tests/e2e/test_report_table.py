"""The thread table of a real recording with many short threads: groups add up exactly
to their members (JSON), the text folds them, its HELD% column adds up to the GIL's
utilisation, the default report stays short, and --max-threads shows more or fewer rows.

Exactness tier: runs on every interpreter (a few tenths of a second of workload each).
"""
import json
import math
import re
import sys

from conftest import workload

THREADS = 60
MS = 5


def recording(gilstat, supported_python, tmp_path):
    path = tmp_path / "short.gst"
    result = gilstat("run", "--json", "-o", path, "--", supported_python.path,
                     workload("short_threads.py"), "--threads", THREADS, "--ms", MS)
    assert result.returncode == 0, result.describe()
    return path, result


def table_rows(text):
    """(label, HELD%) of each row of the thread table, and its header line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("THREAD "))
    end = lines[start].index("HELD%") + len("HELD%")  # right-aligned under its title
    rows = []
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith("…"):
            break
        if line.startswith("  per thread held:"):
            continue
        rows.append((line[:lines[start].index("TID")].rstrip(), float(line[end - 7:end])))
    return rows


def test_groups_add_up_to_their_members(gilstat, supported_python, tmp_path):
    path, result = recording(gilstat, supported_python, tmp_path)
    report = json.loads(gilstat("report", path, "--json").stdout)
    check_groups(report, result.describe())


def check_groups(report, ctx):
    """Every thread row is in exactly one group of its kind, and each group's figures
    are exactly the sums of its members'."""
    threads = {(t["tid"], t["gil"]): t for t in report["threads"]}
    seen = set()
    for g in report["groups"]:
        members = [threads[(tid, g["gil"])] for tid in g["tids"]]
        assert g["size"] == len(members) and g["folded"] == (len(members) >= 5), (g, ctx)
        for t in members:
            assert t["group"] == g["key"], (t, g)
            assert re.sub(r"[0-9]+", "N", t["name"]) == g["key"] or t["own"], (t, g)
            assert (t["tid"], t["gil"]) not in seen, "in two groups: %s" % t
            seen.add((t["tid"], t["gil"]))
        for key in ("acquisitions", "forced_handoffs", "drops", "anomalies"):
            assert g[key] == sum(t[key] for t in members), (key, g)
        for key in ("lifetime_s", "held_s", "wait_s", "released_s"):
            assert math.isclose(g[key], sum(t[key] for t in members), rel_tol=1e-12,
                                abs_tol=1e-15), (key, g)
        for key in ("total", "count"):
            assert g["hold_ns"][key] == sum(t["hold_ns"][key] for t in members), g
            assert g["wait_ns"][key] == sum(t["wait_ns"][key] for t in members), g
        helds = sorted(t["held_s"] for t in members)
        assert g["member_held_s"]["max"] == helds[-1], g
        assert helds[0] <= g["member_held_s"]["p50"] <= g["member_held_s"]["p99"] <= helds[-1]
    assert seen == set(threads), "threads in no group\n" + ctx
    # The short threads, named or not, are folded: no more than a few single rows.
    folded = sum(g["size"] for g in report["groups"] if g["folded"])
    assert folded >= THREADS - 8, (folded, [g["key"] for g in report["groups"]], ctx)


def test_text_table_folds_and_adds_up(gilstat, supported_python, tmp_path):
    path, result = recording(gilstat, supported_python, tmp_path)
    report = json.loads(gilstat("report", path, "--json").stdout)
    text = gilstat("report", path).stdout.decode()
    assert len(text.splitlines()) <= 150, text
    rows = table_rows(text)
    labels = [label for label, _ in rows]
    for g in report["groups"]:
        if g["folded"]:
            assert "%s ×%s" % (g["key"], format(g["size"], ",")) in labels, (g["key"], text)
    # One GIL: the rows' HELD% (of the window, each rounded to 0.1) add up to its
    # utilisation.
    util = report["gils"][0]["utilization"] * 100
    assert abs(sum(held for _, held in rows) - util) <= 0.05 * (len(rows) + 1), text
    assert len(rows) == sum(1 for g in report["groups"] if g["folded"]) + sum(
        g["size"] for g in report["groups"] if not g["folded"]), text


def test_max_threads_shows_more_or_fewer_rows(gilstat, supported_python, tmp_path):
    path, _ = recording(gilstat, supported_python, tmp_path)
    report = json.loads(gilstat("report", path, "--json").stdout)
    two = gilstat("report", path, "--max-threads", 2)
    assert two.returncode == 0, two.describe()
    text = two.stdout.decode()
    rows = table_rows(text)
    assert len(rows) == 2, text
    shown = 0
    for label, _ in rows:
        m = re.search(r" ×([0-9,]+)$", label)
        shown += int(m.group(1).replace(",", "")) if m else 1
    more = re.search(r"^… ([0-9,]+) more threads", text, re.M)
    assert more and int(more.group(1).replace(",", "")) == len(report["threads"]) - shown, text

    everything = gilstat("report", path, "--max-threads", "all").stdout.decode()
    assert "more threads" not in everything
    for t in report["threads"]:  # every thread has its own line
        assert re.search(r"^ *%s +%d " % (re.escape(t["name"]), t["tid"]), everything, re.M), (
            t["name"], everything)


def test_max_threads_must_be_a_number_or_all(gilstat, supported_python, tmp_path):
    for command in (["run", "--max-threads", "0", "--", supported_python.path, "-c",
                     "print('ran')"],
                    ["demo", "spin", "--max-threads", "many"]):
        r = gilstat(*command)
        assert r.returncode == 2, r.describe()
        assert "gilstat: error: --max-threads" in r.stderr_text and "hint:" in r.stderr_text
        assert b"ran" not in r.stdout, r.describe()  # refused before running anything


def test_thread_per_request_service_report(gilstat, heavy, tmp_path):
    """Heavy tier: a stdlib thread-per-request server under a client in another process
    (a thread per request): the default report stays under 150 lines, the
    request threads are folded, the groups add up, and no finding calls the kind that
    holds the GIL most starved."""
    path = tmp_path / "service.gst"
    result = gilstat("run", "--json", "-o", path, "--", heavy.path, workload("http_service.py"),
                     "--client", sys.executable, "--seconds", 2, timeout=60)
    assert result.returncode == 0, result.describe()
    requests = result.program_json()["requests"]
    assert requests >= 100, result.describe()
    report = json.loads(gilstat("report", path, "--json").stdout)
    assert report["drops"] == 0, result.describe()
    assert len(report["threads"]) >= requests, len(report["threads"])
    folded = sum(g["size"] for g in report["groups"] if g["folded"])
    assert folded >= requests - 10, [(g["key"], g["size"]) for g in report["groups"]]

    text = gilstat("report", path).stdout.decode()
    assert len(text.splitlines()) <= 150, text
    rows = table_rows(text)
    util = report["gils"][0]["utilization"] * 100
    assert abs(sum(held for _, held in rows) - util) <= 0.05 * (len(rows) + 1), text
    top = rows[0][0]  # the busiest row: the kind holding the GIL most
    for f in report["findings"]:
        if f["id"] == "starved_thread" and top in f["text"]:
            assert f["text"].find(top) == f["text"].find(top + " held it most"), (f, text)
