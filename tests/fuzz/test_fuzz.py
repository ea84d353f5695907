"""The fuzz targets, run for a bounded time (FUZZ_S seconds each, 5 by default; `make fuzz` runs longer).

Each target runs in its own process under libFuzzer (atheris) and must end
without a crash: no exception other than the mapped ones, no disagreement
with the h11 oracle beyond the documented strictness.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import seeds
from tests.fuzz.http11_oracle import compare

HERE = Path(__file__).parent
FUZZ_S = int(os.environ.get("FUZZ_S", "5"))
TARGETS = {
    "http11": (HERE / "fuzz_http11.py", seeds.hostile_requests, ["-max_len=4096", f"-dict={HERE / 'http11.dict'}"]),
    "check_body": (HERE / "fuzz_check_body.py", seeds.check_bodies, ["-max_len=8192"]),
}


def corpus_dir(name, tmp_path):
    """FUZZ_CORPUS_DIR keeps what the fuzzer learnt between `make fuzz` runs; else a fresh copy of the seeds."""
    base = os.environ.get("FUZZ_CORPUS_DIR")
    directory = Path(base) / name if base else tmp_path / "corpus"
    return seeds.write(directory, TARGETS[name][1]())


@pytest.mark.timeout(FUZZ_S + 120)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_runs_clean_for_a_bounded_time(name, tmp_path):
    script, _, flags = TARGETS[name]
    corpus = corpus_dir(name, tmp_path)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    argv = [
        sys.executable,
        str(script),
        f"-max_total_time={FUZZ_S}",
        f"-artifact_prefix={artifacts}/",
        # A fixed seed in the suite, so a CI run is repeatable; `make fuzz` draws one (0 = random).
        f"-seed={os.environ.get('FUZZ_SEED', '1')}",
        "-print_final_stats=1",
        *flags,
        str(corpus),
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=FUZZ_S + 90,
        cwd=tmp_path,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    crashes = sorted(p.name for p in artifacts.iterdir())
    assert result.returncode == 0 and not crashes, (
        f"{name}: exit {result.returncode}, artifacts {crashes}\n{result.stderr[-6000:]}"
    )
    runs = [line for line in result.stderr.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert runs and int(runs[0].split(":")[-1]) > 0, result.stderr[-2000:]


def test_the_seed_requests_agree_with_h11():
    """The oracle on the data-driven corpus itself, without the fuzzer (fast and deterministic)."""
    for data in seeds.hostile_requests():
        compare(data)
