"""Self-test of tools/check_arch.py on tiny synthetic trees (run by `make unit`).

    python3 -m unittest tools/test_check_arch.py      (or: pytest tools/test_check_arch.py)
"""
import io
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_arch  # noqa: E402


class CheckArchTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        self.src = self.root / "src"
        self.baseline = self.root / "baseline.txt"
        self.write("lib.rs", "pub mod a;\npub mod b;\n")

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, rel, text):
        p = self.src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))

    def run_check(self, **kw):
        out = io.StringIO()
        rc = check_arch.check(self.src, self.baseline, out=out, **kw)
        return rc, out.getvalue()

    def violations(self):
        return check_arch.Tree(self.src).all_violations()

    def test_two_module_cycle_is_reported_with_its_edges(self):
        self.write("a.rs", "use crate::b::B;\npub struct A;\n")
        self.write("b/mod.rs", "//! see crate::c, a doc link is no dependency\n\npub fn f() -> crate::a::A { todo!() }\n")
        self.write("c.rs", "pub struct C;\n")
        self.assertEqual(list(self.violations()), ["cycle: a b"])
        rc, out = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn("a -> b: src/a.rs:1:", out)
        self.assertIn("b -> a: src/b/mod.rs:3:", out)

    def test_use_group_and_super_paths_make_edges(self):
        self.write("a.rs", "use crate::{\n    c,\n    b::{x, y},\n};\n")
        self.write("b.rs", "pub fn f() {}\n")
        self.write("c.rs", "use super::a::A;\n")  # super:: from a top-level file is crate::
        self.write("b/inner.rs", "use super::f;\nuse super::super::c::C;\n")
        tree = check_arch.Tree(self.src)
        self.assertEqual(tree.graph["a"], {"b": "src/a.rs:3: b::{x, y},", "c": "src/a.rs:2: c,"})
        self.assertEqual(list(tree.graph["b"]), ["c"])  # super::f stays inside b
        self.assertEqual(list(tree.all_violations()), ["cycle: a b c"])  # a -> b -> c -> a

    def test_test_module_and_test_files_are_ignored(self):
        self.write("a.rs", """\
            pub fn f() {}

            #[cfg(test)]
            mod tests {
                use crate::b::helper;
            }
            """)
        self.write("b.rs", "use crate::a::f;\n")
        self.write("b/tests.rs", "use crate::a::f;\n")
        self.write("a/tests/fixtures.rs", "use crate::b::x;\n")
        self.assertEqual(self.violations(), {})
        self.assertEqual(self.run_check()[0], 0)

    def test_big_file_fails_and_size_exempt_header_passes(self):
        body = "pub fn f() {}\n" * 801
        self.write("a.rs", body)
        self.write("b.rs", "// size-exempt: one table, splitting it hurts\n" + body)
        self.write("c.rs", "pub fn f() {}\n" * 800 + "#[cfg(test)]\nmod tests {\n" + "fn t() {}\n" * 100 + "}\n")
        self.write("tests.rs", body)
        self.assertEqual(list(self.violations()), ["size: src/a.rs"])

    def test_proxy_wasm_outside_filter_fails(self):
        self.write("filter/mod.rs", "use proxy_wasm::traits::*;\n")
        self.write("a.rs", "// proxy_wasm in a comment is fine\nuse proxy_wasm::types::Action;\n")
        self.write("b.rs", 'const S: &str = "proxy_wasm";\n')
        found = self.violations()
        self.assertEqual(list(found), ["proxy_wasm: src/a.rs"])
        self.assertIn("src/a.rs:2:", found["proxy_wasm: src/a.rs"][0])

    def test_baseline_accepts_known_and_fails_on_stale_lines(self):
        self.write("a.rs", "use crate::b::B;\n")
        self.write("b.rs", "use crate::a::A;\n")
        self.assertEqual(self.run_check(write=True)[0], 0)
        self.assertIn("cycle: a b", self.baseline.read_text())
        self.assertEqual(self.run_check()[0], 0)
        self.write("b.rs", "pub struct B;\n")  # cycle fixed: the baseline line is now stale
        rc, out = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn("stale baseline line", out)
        self.assertIn("cycle: a b", out)

    def test_strings_and_chars_do_not_confuse_the_scanner(self):
        self.write("a.rs", """\
            fn f<'a>(x: &'a str) -> char {
                let _ = r#"crate::b " still raw"#;
                let _ = "\\"crate::b";
                '"'
            }
            use crate::b::B;
            """)
        self.write("b.rs", "pub struct B;\n")
        self.assertEqual(check_arch.Tree(self.src).graph["a"], {"b": "src/a.rs:6: use crate::b::B;"})

    def test_modules_of_a_reexported_crate_join_the_graph(self):
        # crates/core/src's modules are the filter crate's own names (pub use), so an
        # edge back from one of them to the filter crate closes a cycle like any other
        core, codec = self.root / "core" / "src", self.root / "codec" / "src"
        for root, rel, text in [(core, "lib.rs", "pub mod b;\n"), (core, "b.rs", "use crate::a::A;\n"),
                                (codec, "lib.rs", "pub mod sse;\n"), (codec, "sse.rs", "use crate::a::X;\n")]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        self.write("a.rs", "use crate::b::B;\nuse crate::codec::sse;\n")
        tree = check_arch.Tree(self.src, (core, Path(f"{codec}=codec")))
        self.assertEqual(tree.modules, ["a", "b", "codec"])
        self.assertEqual(list(tree.graph["a"]), ["b", "codec"])
        self.assertEqual(tree.graph["codec"], {})  # a whole crate names nothing of ours
        self.assertEqual(list(tree.all_violations()), ["cycle: a b"])


if __name__ == "__main__":
    unittest.main()
