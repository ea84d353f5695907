"""A small Dockerfile reader for static checks: instructions, stages and .dockerignore."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case, e.g. "COPY"
    args: str  # the rest of the logical line, continuations joined
    line: int

    def flags(self) -> dict:
        """--name=value options that lead the arguments (COPY --from=build ...)."""
        return dict(re.findall(r"--([a-z-]+)=(\S+)", " ".join(self._words()[: self._flag_count()])))

    def operands(self) -> list:
        return self._words()[self._flag_count() :]

    def exec_form(self):
        """The JSON array of an exec-form instruction, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def _words(self):
        return self.args.split()

    def _flag_count(self):
        words = self._words()
        n = 0
        while n < len(words) and words[n].startswith("--"):
            n += 1
        return n


@dataclass
class Stage:
    base: str
    name: str
    instructions: list = field(default_factory=list)

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list:
    """Returns the stages of a Dockerfile, each with its instructions."""
    stages = []
    logical, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if not logical:
            start = number
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), start)
        logical = ""
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name))
        elif not stages:
            assert instruction.keyword in ("ARG",), f"{path}:{number}: {keyword} before FROM"
        else:
            stages[-1].instructions.append(instruction)
    return stages


def env_pairs(instruction: Instruction) -> dict:
    """KEY=value pairs of an ENV instruction (the form this project uses)."""
    return dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S+)", instruction.args))


def dockerignored(patterns: list, relative: str) -> bool:
    """Whether .dockerignore patterns exclude a path (last match wins, ! re-includes)."""
    excluded = False
    parts = relative.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        for depth in range(1, len(parts) + 1):
            # A pattern that matches a parent folder excludes what is inside it.
            if re.match(_glob_regex(pattern), "/".join(parts[:depth])):
                excluded = not negate
                break
    return excluded


def _glob_regex(pattern: str) -> str:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return out + r"\Z"


def read_dockerignore(path: Path) -> list:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]
