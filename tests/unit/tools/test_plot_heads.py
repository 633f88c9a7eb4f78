#!/usr/bin/env python3
"""tools/plot_heads.py on tests/fixtures/heads/profile.tsv: the heads it marks follow
cache/head_profile.cpp's rule, it writes a PNG, and bad input is one clear error. Exits 77
(ctest SKIP_RETURN_CODE) when no python3 with matplotlib is found.

  test_plot_heads.py tools/plot_heads.py tests/fixtures/heads/profile.tsv
"""
import importlib.util
import os
import subprocess
import sys
import tempfile


def has_matplotlib(py):
    return subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0


def main():
    script, fixture = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("plot_heads", script)
    ph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ph)

    rows = ph.load_profile(fixture)
    assert rows == [[0.1, 0.9], [0.5, 0.5], [0.95, 0.2], [0.05, 0.5]], rows
    # The top fraction, ties to the lower layer then head (as retrieval_heads()).
    assert ph.choose(rows, 0.25) == {(2, 0), (0, 1)}
    assert ph.choose(rows, 0.5) == {(2, 0), (0, 1), (1, 0), (1, 1)}
    assert ph.choose(rows, 0.0) == set()
    assert ph.choose(rows, None, 0.5) == {(0, 1), (1, 0), (1, 1), (2, 0), (3, 1)}
    assert ph.parse_heads("0:1,3:0", rows) == {(0, 1), (3, 0)}

    # The plot itself needs matplotlib: the interpreter running this, else the system one
    # (Debian's python3-matplotlib), as kvsieve profile-heads looks for it.
    py = next((p for p in (sys.executable, "/usr/bin/python3")
               if os.path.exists(p) and has_matplotlib(p)), None)
    if py is None:
        print("SKIP: no python3 with matplotlib (apt-get install python3-matplotlib)")
        return 77
    with tempfile.TemporaryDirectory() as d:
        png = os.path.join(d, "sub", "heads.png")
        os.makedirs(os.path.dirname(png))
        r = subprocess.run([py, script, fixture, "-o", png, "--fraction", "0.25"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "2 marked" in r.stderr, r.stderr
        with open(png, "rb") as f:
            data = f.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, len(data)

        r = subprocess.run([py, script, fixture, "-o", png, "--heads", "9:0"],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "9:0" in r.stderr, r.stderr
        bad = os.path.join(d, "bad.tsv")
        with open(bad, "w") as f:
            f.write("0.1\t0.2\n0.3\n")
        r = subprocess.run([py, script, bad, "-o", png], capture_output=True, text=True)
        assert r.returncode != 0 and "line 2" in r.stderr, r.stderr
    print("plot_heads: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
