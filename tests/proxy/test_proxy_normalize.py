"""Path normalization: the data corpus of hostile targets, one case per line."""

from pathlib import Path

import pytest

from servicekit.request_path import AmbiguousPath, normalize_target, path_segments, require_plain_segments

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


# Escaped bytes that do not decode as strict UTF-8, one case per class: a backend
# with a lenient decoder (old IIS, some Java/Tomcat setups) reads %C0%AE as ".".
NOT_UTF8 = {
    "overlong": "/public/%C0%AE%C0%AE/admin",
    "overlong-3": "/public/%E0%80%AE%E0%80%AE/admin",
    "overlong-4": "/public/%F0%80%80%AF",
    "surrogate": "/public/%ED%A0%BD%ED%B8%80",
    "lone-continuation": "/public/%80",
    "truncated": "/public/%E2%82",
    "truncated-mid-path": "/public/%F0%9F%98/x",
    "above-U+10FFFF": "/public/%F4%90%80%80",
    "invalid-lead": "/public/%F8%88%80%80%80",
}


@pytest.mark.parametrize("path", NOT_UTF8.values(), ids=NOT_UTF8.keys())
def test_escapes_that_are_not_strict_utf8_are_refused(path):
    for target in (path, path + "?q=1"):
        with pytest.raises(AmbiguousPath, match="not valid UTF-8"):
            normalize_target(target)
    with pytest.raises(AmbiguousPath, match="not valid UTF-8"):
        require_plain_segments(path)  # the PDP's forward-auth check


def test_strict_utf8_escapes_pass_unchanged_and_decode_as_spelled():
    path, _ = normalize_target("/u/%c3%a9t%C3%A9/%E2%82%AC/%F0%9F%98%80")
    assert path == "/u/%C3%A9t%C3%A9/%E2%82%AC/%F0%9F%98%80"
    assert path_segments(path) == ["u", "\u00e9t\u00e9", "\u20ac", "\U0001f600"]
    require_plain_segments(path)
