"""Coverage-guided fuzzing (atheris) of proxy/http11.py against h11 (tests/fuzz/http11_oracle.py).

    python tests/fuzz/fuzz_http11.py [libFuzzer flags] [corpus dirs]

Seeds: tests/proxy/data/hostile_requests.tsv. A crash is an exception other
than the parser's own, or a disagreement with h11 beyond the documented
strictness; libFuzzer then exits non-zero and writes the input as a crash file.
"""

import os
import sys

import atheris

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

with atheris.instrument_imports(include=["proxy"]):
    # Imported here first so that the parser's code is instrumented for coverage.
    from tests.fuzz.http11_oracle import compare


def test_one_input(data: bytes) -> None:
    compare(data)


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
