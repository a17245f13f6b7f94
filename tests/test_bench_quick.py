"""benchmarks/quick.py (`make bench`): a benchmark that cannot run is listed with its reason, not dropped."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

QUICK = Path(__file__).resolve().parent.parent / "benchmarks" / "quick.py"


def _quick():
    spec = importlib.util.spec_from_file_location("bench_quick", QUICK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_quick_benchmark_exists_and_takes_an_out_file() -> None:
    quick = _quick()
    for name in quick.QUICK:
        text = (QUICK.parent / f"{name}.py").read_text()
        assert '"--out"' in text, f"{name}.py has no --out for its table"


def test_a_benchmark_that_fails_is_reported_with_its_last_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = _quick()
    (tmp_path / "broken.py").write_text("import sys\nprint('pybullet is missing', file=sys.stderr)\nsys.exit(1)\n")
    monkeypatch.setattr(quick, "HERE", tmp_path)
    text, seconds = quick.run_one("broken", [], timeout=60)
    assert text == "not run: pybullet is missing\n" and seconds >= 0
    (tmp_path / "fine.py").write_text(
        "import sys\nout = sys.argv[sys.argv.index('--out') + 1]\nopen(out, 'w').write('| a | b |\\n')\n"
    )
    assert quick.run_one("fine", [], timeout=60)[0] == "| a | b |\n"
