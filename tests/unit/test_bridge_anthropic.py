"""Anthropic specifics: the separate system prompt, merged turns, cache-aware usage."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nodes.bridges.anthropic_provider import UsageCounter, finish_reason, split_system
from nodes.bridges.openai_provider import chunk_of, usage_from_json
from nodes.bridges.openai_provider import finish_reason as openai_finish
from nodes.engines.base import FinishReason, Message


def test_system_turns_leave_the_message_list() -> None:
    system, turns = split_system(
        [
            Message("system", "Be terse."),
            Message("user", "Hi"),
            Message("user", "Are you there?"),
            Message("assistant", "Yes."),
            Message("system", "Answer in French."),
            Message("user", "Capital of France?"),
        ]
    )
    assert system == "Be terse.\n\nAnswer in French."
    assert turns == [
        {"role": "user", "content": "Hi\n\nAre you there?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert split_system([Message("user", "x")]) == (None, [{"role": "user", "content": "x"}])


def test_usage_counts_every_prompt_token_and_keeps_the_latest_counts() -> None:
    counter = UsageCounter()
    counter.update(
        SimpleNamespace(
            input_tokens=10,
            output_tokens=1,
            cache_read_input_tokens=100,
            cache_creation_input_tokens=20,
        )
    )
    counter.update(SimpleNamespace(output_tokens=42, input_tokens=None))  # message_delta
    usage = counter.usage()
    assert (usage.input_tokens, usage.output_tokens) == (130, 42)
    assert (usage.cached_input_tokens, usage.cache_write_input_tokens) == (100, 20)
    assert counter.reported and not UsageCounter().reported


def test_finish_reasons() -> None:
    assert finish_reason("end_turn") is FinishReason.STOP
    assert finish_reason("stop_sequence") is FinishReason.STOP
    assert finish_reason("max_tokens") is FinishReason.LENGTH
    assert finish_reason("refusal") is FinishReason.ABORTED
    assert openai_finish("length") is FinishReason.LENGTH
    assert openai_finish("content_filter") is FinishReason.ABORTED
    assert openai_finish(None) is FinishReason.STOP


def test_openai_usage_cached_tokens_are_part_of_the_prompt() -> None:
    usage = usage_from_json(
        {
            "prompt_tokens": 50,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 32},
        }
    )
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (50, 5, 32)
    bare = usage_from_json({"prompt_tokens": 3, "completion_tokens": 1})
    assert bare.cached_input_tokens == 0
    for broken in ({"prompt_tokens": -1}, {"completion_tokens": "5"}, ["not", "usage"]):
        with pytest.raises((TypeError, AttributeError)):
            usage_from_json(broken)


def test_openai_chunks_are_read_strictly() -> None:
    from mesh.contract.errors import MeshError

    chunk = {
        "choices": [{"delta": {"content": "Hi"}, "finish_reason": None}],
        "usage": None,
    }
    assert chunk_of(chunk, provider="p", model="m") == (["Hi"], None, None)
    last = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    pieces, finish, usage = chunk_of(last, provider="p", model="m")
    assert (pieces, finish, usage and usage.output_tokens) == ([], None, 2)
    for broken in (
        ["a list"],
        {"choices": [{"delta": {"content": 7}}]},
        {"choices": [{"delta": {}, "finish_reason": ["stop"]}]},
        {"choices": "abc"},
    ):
        with pytest.raises(MeshError) as caught:
            chunk_of(broken, provider="p", model="m")
        assert caught.value.reason == "UPSTREAM_BAD_RESPONSE"
