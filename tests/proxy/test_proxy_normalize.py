"""Path normalization: the data corpus of hostile targets, one case per line."""

from pathlib import Path

import pytest

from servicekit.request_path import AmbiguousPath, normalize_target, require_plain_segments

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


@pytest.mark.parametrize(
    "path",
    ["/", "/a/b", "/a/b/", "/a/.b", "/a/...", "/a/%7Eu", "/a/b;x", "/a/%E2%82%AC"],
)
def test_plain_segments_pass(path):
    require_plain_segments(path)


@pytest.mark.parametrize(
    "path", ["//a", "/a//b", "/a/./b", "/a/.", "/a/..", "/a/../b", "/a/%2e%2e/b", "/a/.%2E/b", "/a/%2e/b", "/a%2fb"]
)
def test_segments_normalizing_would_change_are_refused(path):
    with pytest.raises(AmbiguousPath):
        require_plain_segments(path)
