"""A strict parser of the Prometheus text exposition format (0.0.4) and of OpenMetrics
1.0, for the tests of `gilstat export --format prometheus` (tests/unit/check_exports.py)
and `gilstat exporter` (tests/e2e/test_exporter.py): every line is checked."""
import math
import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')
FLOAT = re.compile(r"^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf)|NaN)$")
SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % NAME)
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_labels(text, where):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, "bad label syntax at %r: %s" % (text[pos:], where)
        assert m.group(1) not in labels, "duplicate label: " + where
        labels[m.group(1)] = m.group(2)
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ",", "expected ',': " + where
            pos += 1
    return labels


def parse_exposition(text, openmetrics=False):
    """Every line checked: HELP then TYPE once per family, samples inside their family,
    valid names, labels and values, no duplicate series, counters named _total (and
    _created in OpenMetrics), histograms cumulative with le=+Inf == _count; OpenMetrics
    ends with '# EOF'. Returns {(name, frozenset(labels)): value} and {family: type}."""
    assert text.endswith("\n"), "must end with a newline"
    lines = text.split("\n")[:-1]
    if openmetrics:
        assert lines and lines[-1] == "# EOF", "OpenMetrics must end with # EOF"
        lines = lines[:-1]
    helps, types, samples, current = set(), {}, {}, None
    for n, line in enumerate(lines, 1):
        where = "line %d: %r" % (n, line)
        assert line, "empty line " + where
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(NAME, name) and name not in helps, where
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            assert len(parts) == 4 and parts[3] in TYPES, where
            name = parts[2]
            assert name in helps and name not in types, where
            types[name], current = parts[3], name
            continue
        assert not line.startswith("#"), where
        m = SAMPLE.match(line)
        assert m and current, "bad sample " + where
        name, labels, value = m.group(1), parse_labels(m.group(2) or "", where), m.group(3)
        assert FLOAT.match(value), "bad value " + where
        typ = types[current]
        if typ == "counter":
            allowed = ((current + "_total", current + "_created") if openmetrics
                       else (current,))
            assert name in allowed and (openmetrics or name.endswith("_total")), where
        elif typ == "histogram":
            suffixes = ("_bucket", "_sum", "_count") + (("_created",) if openmetrics else ())
            assert name in [current + s for s in suffixes], where
        else:
            assert name == current, where
        if typ in ("counter", "histogram") and not name.endswith("_created"):
            assert float(value) >= 0, where
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate series " + where
        samples[key] = float(value)
    for family, typ in types.items():
        if typ != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            d = dict(labels)
            if name == family + "_bucket":
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), {}).setdefault("b", []).append(
                    (float(le), v))
            elif name in (family + "_count", family + "_sum"):
                series.setdefault(labels, {})[name[len(family) + 1:]] = v
        for labels, s in series.items():
            les = [le for le, _ in s["b"]]
            counts = [c for _, c in s["b"]]
            assert les == sorted(les) and les[-1] == math.inf, (family, labels)
            assert counts == sorted(counts), ("not cumulative", family, labels, counts)
            assert s["count"] == counts[-1], (family, labels)
            assert "sum" in s, (family, labels)
    return samples, types
