"""Path normalization: the data corpus of hostile targets, one case per line."""

from pathlib import Path

import pytest

from servicekit.request_path import AmbiguousPath, normalize_target

CORPUS = Path(__file__).parent / "data" / "hostile_targets.tsv"


def load_corpus():
    cases = []
    for line in CORPUS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        target, expected = line.split("\t")
        cases.append((target, expected))
    return cases


@pytest.mark.parametrize("target,expected", load_corpus())
def test_corpus_case(target, expected):
    if expected == "400":
        with pytest.raises(AmbiguousPath):
            normalize_target(target)
        return
    path, query = normalize_target(target)
    assert path + ("?" + query if query else "") == expected


def test_normalizing_twice_changes_nothing():
    for _target, expected in load_corpus():
        if expected == "400":
            continue
        path, query = normalize_target(expected)
        assert path + ("?" + query if query else "") == expected
