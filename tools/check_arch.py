#!/usr/bin/env python3
"""Architecture guards over src/ (run by `make lint`; Python 3.11 stdlib only).

1. cycle:      no import cycle between top-level modules (src/foo.rs or src/foo/ -> `foo`),
               from `crate::` paths (and `super::` paths that climb to the crate root) in
               non-test code. Each cycle (strongly connected component) is printed with one
               example file:line per edge, so an engineer knows where to cut it.
2. size:       a non-test .rs file under src/ (and crates/core/src/) has at most 800 lines (up to its bottom test
               module) unless one of its first 5 lines is a comment `size-exempt: <reason>`.
3. proxy_wasm: only src/filter/ names the proxy_wasm crate: the rest of the crate stays
               testable natively and free of host calls.

tools/arch-baseline.txt lists accepted-for-now violations (`cycle: a b c`, `size: src/x.rs`).
A violation not in it fails, and so does a line in it that no longer occurs, so the list only
shrinks as the restructuring goes on. `--write-baseline` rewrites it from the current tree.

    python3 tools/check_arch.py [--src src] [--also crates/core/src] [--baseline tools/arch-baseline.txt]
                                [--report] [--write-baseline]
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

MAX_LINES = 800
EXEMPT_RE = re.compile(r"^\s*(//|/\*).*size-exempt:\s*\S")
# The attribute line that starts the bottom test module: `#[cfg(test)]` at column 0,
# followed (after other attributes / blank lines) by `mod name {`.
CFG_TEST_RE = re.compile(r"^#\[cfg\(test\)\]\s*$")
MOD_BLOCK_RE = re.compile(r"^(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CRATE_RE = re.compile(r"(?<![A-Za-z0-9_])crate\s*::\s*(\{|" + IDENT + ")")
SUPER_RE = re.compile(r"(?<![A-Za-z0-9_:])((?:super\s*::\s*)+)(\{|" + IDENT + ")")
PROXY_WASM_RE = re.compile(r"(?<![A-Za-z0-9_])proxy_wasm(?![A-Za-z0-9_])")
RAW_STR_RE = re.compile(r"b?r(#*)\"")
CHAR_RE = re.compile(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'")
IDENT_RE = re.compile(IDENT)


# ---------------------------------------------------------------- reading Rust source

def strip_comments_and_strings(text: str) -> str:
    """Blank out comments, string and char literals (newlines kept, so offsets and line
    numbers stay valid): a doc link to `crate::x` or a string naming proxy_wasm is no
    dependency. Handles nested block comments, escapes, raw strings (r#"..."#) and tells
    char literals ('a', '\\n') from lifetimes ('a)."""
    out = list(text)
    n, i = len(text), 0

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif m := RAW_STR_RE.match(text, i):  # only at a word start: identifiers are skipped whole
            end = text.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # char literal: 'x' or '\..' ; otherwise a lifetime or label ('a, 'static)
            m = CHAR_RE.match(text, i)
            if m:
                blank(i, m.end())
                i = m.end()
            else:
                i += 1
        elif c.isalnum() or c == "_":
            # skip the rest of an identifier, so `br"` / `r#"` tests above see word starts only
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            i = j
        else:
            i += 1
    return "".join(out)


def non_test_line_count(lines: list[str]) -> int:
    """Lines before the `#[cfg(test)]` that starts the file's bottom test module
    (`#[cfg(test)] mod tests;` pointing at another file, or a cfg(test) fn, does not end it)."""
    for i, line in enumerate(lines):
        if not CFG_TEST_RE.match(line):
            continue
        for nxt in lines[i + 1:]:
            if nxt.strip() == "" or nxt.lstrip().startswith("#["):
                continue
            if MOD_BLOCK_RE.match(nxt):
                return i
            break
    return len(lines)


def is_test_file(rel: Path) -> bool:
    """Files that hold only tests: `tests.rs` anywhere, or anything under a `tests/` folder."""
    return rel.name == "tests.rs" or "tests" in rel.parts[:-1]


def top_module(rel: Path) -> str | None:
    """src-relative path -> its top-level module, None for the crate root and binaries."""
    if rel.parts[0] == "bin" or rel.as_posix() in ("lib.rs", "main.rs"):
        return None
    return rel.parts[0].removesuffix(".rs")


def module_depth(rel: Path) -> int:
    """How many `super::` lead from this file to the crate root: src/a.rs and src/a/mod.rs
    are 1, src/a/b.rs is 2. (Inline `mod x { .. }` blocks are not tracked.)"""
    parts = list(rel.parts)
    if parts[-1] == "mod.rs":
        parts.pop()
    return len(parts)


def group_items(code: str, open_brace: int) -> list[tuple[str, int]]:
    """For `{a, b::c, d::{e}}` starting at open_brace: each item's first path segment and its
    offset. Only the outer group matters: `b::{..}` depends on b whatever it lists."""
    items, depth, j = [], 0, open_brace
    expect_item = True
    while j < len(code):
        ch = code[j]
        if ch == "{":
            depth += 1
            expect_item = depth == 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        elif ch == "," and depth == 1:
            expect_item = True
        elif expect_item and depth == 1 and (m := IDENT_RE.match(code, j)):
            items.append((m.group(0), j))
            expect_item = False
            j = m.end()
            continue
        j += 1
    return items


def file_deps(code: str, depth: int) -> list[tuple[str, int]]:
    """(top-level module name, offset) for every crate-root path in the code."""
    found = []
    for m in CRATE_RE.finditer(code):
        if m.group(1) == "{":
            found += group_items(code, m.start(1))
        else:
            found.append((m.group(1), m.start(1)))
    for m in SUPER_RE.finditer(code):
        if m.group(1).count("super") != depth:
            continue  # stays inside this module's own tree
        if m.group(2) == "{":
            found += group_items(code, m.start(2))
        else:
            found.append((m.group(2), m.start(2)))
    return [(name, off) for name, off in found if name not in ("self", "super", "crate")]


# ---------------------------------------------------------------- the three guards

class Tree:
    """One module graph over the crate's `src` and the source roots of crates whose
    modules it re-exports under the same names (`extra`: crates/core/src, whose
    `crate::api` is the filter crate's `crate::api` too). A root given as
    `path=name` is a whole crate re-exported as one module (`crates/codec/src=codec`):
    every file in it is that module, and it names nothing outside itself (it has no
    dependency on the others; the compiler checks that)."""

    def __init__(self, src: Path, extra: tuple[Path, ...] = ()):
        self.root = src.parent  # paths print relative to the repo: src/x.rs
        self.whole: dict[Path, str] = {}
        roots = [src]
        for e in extra:
            path, _, name = str(e).partition("=")
            roots.append(Path(path))
            if name:
                self.whole[Path(path)] = name
        self.files = sorted((s, p) for s in roots for p in s.rglob("*.rs") if p.is_file())
        self.modules = sorted({m for s, p in self.files if (m := self._module(s, p))})
        # graph[a][b] = first "file:line" where module a names module b
        self.graph: dict[str, dict[str, str]] = {m: {} for m in self.modules}
        self.violations: dict[str, list[str]] = {}  # key -> detail lines
        for s, p in self.files:
            self._scan(s, p)

    def _module(self, src: Path, p: Path) -> str | None:
        return self.whole.get(src) or top_module(p.relative_to(src))

    def _name(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    def _scan(self, src: Path, p: Path) -> None:
        rel = p.relative_to(src)
        text = p.read_text(encoding="utf-8")
        # split on "\n" only, as the stripped code is: line numbers must agree
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        test_file = is_test_file(rel)
        code = strip_comments_and_strings(text)

        if rel.parts[0] != "filter" and (m := PROXY_WASM_RE.search(code)):
            line = code.count("\n", 0, m.start()) + 1
            self.violations[f"proxy_wasm: {self._name(p)}"] = [
                f"{self._name(p)}:{line}: proxy_wasm outside src/filter/: {lines[line - 1].strip()}"]

        if test_file:
            return
        keep = non_test_line_count(lines)
        if keep > MAX_LINES and not any(EXEMPT_RE.match(l) for l in lines[:5]):
            self.violations[f"size: {self._name(p)}"] = [
                f"{self._name(p)}: {keep} non-test lines > {MAX_LINES} "
                f"(split it, or add `// size-exempt: <reason>` in its first 5 lines)"]

        mod = top_module(rel)
        if mod is None or src in self.whole:
            return
        code = "\n".join(code.split("\n")[:keep])
        for dep, off in file_deps(code, module_depth(rel)):
            if dep != mod and dep in self.graph:
                line = code.count("\n", 0, off) + 1
                self.graph[mod].setdefault(dep, f"{self._name(p)}:{line}: {lines[line - 1].strip()}")

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one module (Tarjan)."""
        index, low, stack, on, out = {}, {}, [], set(), []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in sorted(self.graph[v]):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        sys.setrecursionlimit(10_000)
        for v in self.modules:
            if v not in index:
                visit(v)
        return sorted(out)

    def all_violations(self) -> dict[str, list[str]]:
        found = dict(self.violations)
        for comp in self.cycles():
            members = set(comp)
            edges = [f"  {a} -> {b}: {where}" for a in comp
                     for b, where in sorted(self.graph[a].items()) if b in members]
            found["cycle: " + " ".join(comp)] = [
                f"import cycle between {', '.join(comp)} (cut one of these edges):", *edges]
        return dict(sorted(found.items()))


# ---------------------------------------------------------------- baseline and report

def read_baseline(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def write_baseline(path: Path, keys: list[str]) -> None:
    header = ("# Accepted-for-now architecture violations (tools/check_arch.py).\n"
              "# Remove a line when its violation is fixed; the checker fails on stale lines.\n")
    path.write_text(header + "".join(k + "\n" for k in keys))


def check(src: Path, baseline: Path, report: bool = False, write: bool = False, out=sys.stdout,
          extra: tuple[Path, ...] = ()) -> int:
    tree = Tree(src, extra)
    found = tree.all_violations()
    if report:
        print(f"module graph ({len(tree.modules)} top-level modules under {src}):", file=out)
        for m in tree.modules:
            print(f"  {m} -> {', '.join(sorted(tree.graph[m])) or '-'}", file=out)
        print(file=out)
    if write:
        write_baseline(baseline, list(found))
        print(f"wrote {len(found)} line(s) to {baseline}", file=out)
        return 0

    accepted = read_baseline(baseline)
    new = [k for k in found if k not in accepted]
    stale = [k for k in accepted if k not in found]
    for k in new:
        print(f"error: {k}", file=out)
        for d in found[k]:
            print(f"  {d}", file=out)
        if k.startswith("cycle: "):
            # a cycle that lost members is progress, but its baseline line must be updated
            mods = set(k.split()[1:])
            for s in stale:
                if s.startswith("cycle: ") and mods < set(s.split()[1:]):
                    print(f"  (smaller than baseline `{s}`: replace that line with `{k}`)", file=out)
    for k in stale:
        print(f"error: stale baseline line (no longer occurs, delete it from {baseline}): {k}", file=out)
    known = [k for k in found if k in accepted]
    if known:
        print(f"{len(known)} known violation(s) accepted by {baseline}:", file=out)
        for k in known:
            print(f"  {k}", file=out)
    if new or stale:
        print(f"check_arch: FAILED ({len(new)} new violation(s), {len(stale)} stale baseline line(s))", file=out)
        return 1
    print("check_arch: ok", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent
    ap.add_argument("--src", type=Path, default=here.parent / "src")
    ap.add_argument("--also", type=Path, action="append",
                    help="another crate's src whose modules --src re-exports (default: crates/core/src and crates/codec/src)")
    ap.add_argument("--baseline", type=Path, default=here / "arch-baseline.txt")
    ap.add_argument("--report", action="store_true", help="also print module -> deps")
    ap.add_argument("--write-baseline", action="store_true", help="accept the current violations")
    a = ap.parse_args(argv)
    also = tuple(a.also) if a.also else (here.parent / "crates" / "core" / "src", Path(f"{here.parent / 'crates' / 'codec' / 'src'}=codec"))
    return check(a.src, a.baseline, report=a.report, write=a.write_baseline, extra=also)


if __name__ == "__main__":
    sys.exit(main())
