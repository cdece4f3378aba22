"""Renders charts/eargate with Helm's own engine (helm-python-sdk), exactly as the chart
tests do (tests/chart/conftest.py `render`), and prints every object as one JSON list.

    python scripts/render-chart.py [--release NAME] [--namespace NS] < values.json

The Rust tests use it (crates/testkit/src/chart.rs) to apply the chart's own manifests to a
real kube-apiserver.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "chart"))
import conftest  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--release", default=conftest.RELEASE)
parser.add_argument("--namespace", default=conftest.NAMESPACE)
args = parser.parse_args()
if conftest.MISSING:
    sys.exit(f"render-chart: missing Python modules: {', '.join(conftest.MISSING)}")
text = sys.stdin.read().strip()
values = json.loads(text) if text else {}
json.dump(conftest.render(values, name=args.release, namespace=args.namespace), sys.stdout)
