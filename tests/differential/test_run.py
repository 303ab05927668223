"""Unit tests of the differential tool's comparison (no LiteLLM call, no Envoy): the parts that
decide agree / documented / disagree must themselves be able to fail.

    target/differential/venv/bin/python -m unittest discover -s tests/differential -p 'test_*.py'
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402


def diffs(a, b):
    out = []
    run.diff(a, b, "", out)
    return out


class Compare(unittest.TestCase):
    def test_equal_views_have_no_difference(self):
        v = {"choices": [{"content": "hi", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}]}
        self.assertEqual(diffs(v, {"choices": [{"content": "hi", "tool_calls": [{"arguments": {"a": 1.0}, "name": "f"}]}]}), [])

    def test_every_kind_of_difference_is_found(self):
        self.assertEqual(diffs({"a": 1}, {"a": 2}), [("a", 1, 2)])
        self.assertEqual(diffs({"a": 1}, {}), [("a", 1, run.ABSENT)])
        self.assertEqual(diffs({"l": [1]}, {"l": [1, 2]}), [("l[1]", run.ABSENT, 2)])
        self.assertEqual(diffs({"b": True}, {"b": 1}), [("b", True, 1)])
        self.assertEqual(diffs({"s": "x"}, {"s": ["x"]}), [("s", "x", ["x"])])

    def test_glob_only_star_is_special(self):
        self.assertTrue(run.glob_match("request.0.body.tools[*].type", "request.0.body.tools[3].type"))
        self.assertFalse(run.glob_match("request.0.body.tools[0]", "request.0.body.toolsX0]"))
        self.assertTrue(run.glob_match(["a", "b*"], "bc"))
        self.assertFalse(run.glob_match(["a", "b"], "c"))

    def test_departures_match_provider_case_and_field(self):
        deps = [{"provider": ["gemini"], "case": "tool*", "field": "answer.*", "reason": "r", "_used": 0}]
        self.assertIsNotNone(run.departure_for(deps, "gemini", "tools_auto", "answer.usage.total_tokens"))
        self.assertIsNone(run.departure_for(deps, "vertex_ai", "tools_auto", "answer.usage.total_tokens"))
        self.assertIsNone(run.departure_for(deps, "gemini", "plain_text", "answer.usage.total_tokens"))
        self.assertIsNone(run.departure_for(deps, "gemini", "tools_auto", "request.0.body"))

    def test_departure_file_is_valid(self):
        deps = run.load_departures()  # raises SystemExit on a missing key or README anchor
        self.assertTrue(deps)

    def test_readme_anchors_follow_github_slugs(self):
        anchors = run.readme_anchors()
        for a in ("#anthropic-mapping", "#gemini-and-vertex-ai-mapping", "#provider-feature-matrix", "#providers"):
            self.assertIn(a, anchors)


class Normalise(unittest.TestCase):
    def test_ignore_modes(self):
        body = {"options": {}, "messages": [{"images": [], "content": None}, {"images": ["x"], "content": "c"}],
                "tools": [{"type": "custom"}, {"type": "bash_20250124"}]}
        b = run._drop_path(body, ["options"], "if_empty")
        self.assertNotIn("options", b)
        b = run._drop_path(body, ["messages", "*", "images"], "if_empty")
        self.assertEqual(b["messages"], [{"content": None}, {"images": ["x"], "content": "c"}])
        b = run._drop_path(body, ["messages", "*", "content"], "if_null")
        self.assertEqual(b["messages"], [{"images": []}, {"images": ["x"], "content": "c"}])
        b = run._drop_path(body, ["tools", "*", "type"], "if_value", "custom")
        self.assertEqual(b["tools"], [{}, {"type": "bash_20250124"}])
        self.assertEqual(body["options"], {}, "the recorded body is not changed")

    def test_camelize_keeps_free_form_values(self):
        v = run.camelize_proto({"generation_config": {"max_output_tokens": 5},
                                "tools": [{"function_declarations": [{"name": "f", "parameters": {"properties": {"my_arg": {}}}}]}],
                                "contents": [{"parts": [{"function_call": {"name": "f", "args": {"my_arg": 1}}}]}]})
        self.assertEqual(v["generationConfig"], {"maxOutputTokens": 5})
        self.assertIn("my_arg", v["tools"][0]["functionDeclarations"][0]["parameters"]["properties"])
        self.assertEqual(v["contents"][0]["parts"][0]["functionCall"]["args"], {"my_arg": 1})

    def test_stream_is_accumulated_like_a_whole_answer(self):
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                                "function": {"name": "get", "arguments": ""}}]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]},
                          "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
        ]
        whole = {"json": {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "x", "type": "function", "function": {"name": "get", "arguments": "{\"a\": 1}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}}
        self.assertEqual(run.answer_view({"chunks": chunks}), run.answer_view(whole))

    def test_json_content_compares_parsed(self):
        a = run.answer_view({"json": {"choices": [{"message": {"role": "assistant", "content": "{\"a\": 1}"}}]}})
        b = run.answer_view({"json": {"choices": [{"message": {"role": "assistant", "content": "{\"a\":1}"}}]}})
        self.assertEqual(diffs(a, b), [])

    def test_errors_compare_status_class_and_type(self):
        a = {"error": run.error_view(400, None, "x")}
        b = {"error": run.error_view(422, "invalid_request_error", "y")}
        self.assertEqual(diffs(run.answer_view(a), run.answer_view(b)), [])
        c = {"error": run.error_view(500, None, "z")}
        self.assertTrue(diffs(run.answer_view(a), run.answer_view(c)))


if __name__ == "__main__":
    unittest.main()
