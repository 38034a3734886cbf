"""Responses API stream events: their models and the sequence of one response built from engine
chunks as they come (created, in_progress, each output item added / its deltas / done, then
completed or incomplete; a failure mid-way is response.failed). Knows no HTTP or engine thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any, Literal

from pydantic.json_schema import SkipJsonSchema

from api.errors import from_exception
from api.openai.responses_api.objects import (
    Call,
    CustomToolCallItem,
    ErrorDetails,
    FunctionCallItem,
    Kinds,
    MessageItem,
    OutputItem,
    OutputText,
    ReasoningItem,
    ReasoningText,
    ResponseObject,
    call_item,
    custom_input,
    finished,
    new_id,
)
from api.wire import ReplyModel, call_events, omitted
from workbench.engine import Chunk, EngineStoppedError, GenerationStats
from workbench.engine.structured.tools import CallSplitter

Item = MessageItem | ReasoningItem | Call


class Event(ReplyModel):
    type: str
    sequence_number: int


class LifecycleEvent(Event):
    type: Literal[
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    ]
    response: ResponseObject


class ItemEvent(Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class PartEvent(Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int = 0
    part: OutputText | ReasoningText


class TextEvent(Event):
    """A piece of an item's text (`delta`), or all of it when the item is done (`text`)."""

    type: Literal[
        "response.output_text.delta",
        "response.output_text.done",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
    ]
    item_id: str
    output_index: int
    content_index: int = 0
    delta: str | SkipJsonSchema[None] = omitted("in a delta")
    text: str | SkipJsonSchema[None] = omitted("when done")
    logprobs: list[Any] | SkipJsonSchema[None] = omitted("output text only (always empty here)")


class ArgumentsEvent(Event):
    type: Literal["response.function_call_arguments.delta", "response.function_call_arguments.done"]
    item_id: str
    output_index: int
    delta: str | SkipJsonSchema[None] = omitted("in a delta")
    arguments: str | SkipJsonSchema[None] = omitted("when done")
    name: str | SkipJsonSchema[None] = omitted("when done")


class ResponseEvents:
    """One response's event sequence: numbers the events and keeps the open output item."""

    def __init__(self, response: ResponseObject, kinds: Kinds | None = None) -> None:
        self.response = response
        self.kinds = kinds or {}
        self.seq = -1
        self.items: list[Item] = []
        self.open: Item | None = None
        self.text = ""  # the open item's text or arguments so far

    def _n(self) -> int:
        self.seq += 1
        return self.seq

    def lifecycle(self, kind: str, response: ResponseObject) -> LifecycleEvent:
        return LifecycleEvent(type=kind, sequence_number=self._n(), response=response)  # type: ignore[arg-type]

    def start(self, item: Item) -> list[Event]:
        out = self.close()
        self.open, self.text = item, ""
        index = len(self.items)
        out.append(
            ItemEvent(
                type="response.output_item.added", sequence_number=self._n(), output_index=index, item=item
            )
        )
        if isinstance(item, (MessageItem, ReasoningItem)):
            part = OutputText(text="") if isinstance(item, MessageItem) else ReasoningText(text="")
            out.append(self._part("response.content_part.added", part))
        return out

    def _part(self, kind: str, part: OutputText | ReasoningText) -> PartEvent:
        assert self.open is not None
        return PartEvent(
            type=kind,
            sequence_number=self._n(),
            item_id=self.open.id,
            output_index=len(self.items),
            part=part,
        )  # type: ignore[arg-type]

    def add(self, kind: type[Item], piece: str, name: str | None = None) -> list[Event]:
        """`piece` of text for a reasoning or message item (opened if another is open), or of
        arguments for the open function call."""
        out: list[Event] = []
        if kind is ReasoningItem and not isinstance(self.open, ReasoningItem):
            out = self.start(ReasoningItem(id=new_id("rs"), status="in_progress", content=[]))
        elif kind is MessageItem and not isinstance(self.open, MessageItem):
            out = self.start(MessageItem(id=new_id("msg"), status="in_progress", content=[]))
        elif kind is FunctionCallItem and name is not None:
            return self.start(call_item(name, "", "in_progress", self.kinds))
        assert self.open is not None
        self.text += piece
        index, item_id = len(self.items), self.open.id
        if isinstance(self.open, CustomToolCallItem):
            return out  # its input (one string argument, as JSON) is known when the call ends
        if isinstance(self.open, FunctionCallItem):
            delta = "response.function_call_arguments.delta"
            out.append(
                ArgumentsEvent(
                    type=delta, sequence_number=self._n(), item_id=item_id, output_index=index, delta=piece
                )
            )
        else:
            kind_name = "output_text" if isinstance(self.open, MessageItem) else "reasoning_text"
            logprobs = [] if isinstance(self.open, MessageItem) else None
            out.append(
                TextEvent(
                    type=f"response.{kind_name}.delta",  # type: ignore[arg-type]
                    sequence_number=self._n(),
                    item_id=item_id,
                    output_index=index,
                    delta=piece,
                    logprobs=logprobs,
                )
            )
        return out

    def close(self, status: str = "completed") -> list[Event]:
        """Finish the open item: its text (or arguments) done, its part done, the item done."""
        item, out = self.open, []
        if item is None:
            return []
        index, text = len(self.items), self.text
        if isinstance(item, CustomToolCallItem):
            done = item.model_copy(update={"input": custom_input(text), "status": status})
        elif isinstance(item, FunctionCallItem):
            done = item.model_copy(update={"arguments": text, "status": status})
            out.append(
                ArgumentsEvent(
                    type="response.function_call_arguments.done",
                    sequence_number=self._n(),
                    item_id=item.id,
                    output_index=index,
                    arguments=text,
                    name=item.name,
                )
            )
        else:
            message = isinstance(item, MessageItem)
            part = OutputText(text=text) if message else ReasoningText(text=text)
            kind = "response.output_text.done" if message else "response.reasoning_text.done"
            out.append(
                TextEvent(
                    type=kind,  # type: ignore[arg-type]
                    sequence_number=self._n(),
                    item_id=item.id,
                    output_index=index,
                    text=text,
                    logprobs=[] if message else None,
                )
            )
            out.append(self._part("response.content_part.done", part))
            done = item.model_copy(update={"content": [part], "status": status})
        out.append(
            ItemEvent(
                type="response.output_item.done", sequence_number=self._n(), output_index=index, item=done
            )
        )
        self.items.append(done)
        self.open, self.text = None, ""
        return out


async def response_events(
    response: ResponseObject,
    chunks: AsyncIterator[tuple[int, Chunk]],
    kinds: Kinds,
    cached_prompt: bool,
    on_done: Callable[[ResponseObject], None],
) -> AsyncIterator[Event]:
    """The whole sequence (`kinds`: the offered tools, ResponsesRequest.tool_kinds); `on_done`
    gets the final response (to store it). A failure after the first event (the request
    timeout, the engine stopping) ends it with response.failed."""
    events, tools = ResponseEvents(response, kinds), bool(kinds)
    yield events.lifecycle("response.created", response)
    yield events.lifecycle("response.in_progress", response)
    split, native, stats = CallSplitter(mode="?" if tools else "text"), False, None
    try:
        async with aclosing(chunks) as stream:
            async for _, chunk in stream:
                for event in _chunk_events(events, split, chunk, native):
                    yield event
                native = native or bool(chunk.calls)
                stats = chunk.stats or stats
    except Exception as exc:
        err = from_exception(exc)
        failed = response.model_copy(
            update={
                "status": "failed",
                "output": events.items,
                "error": ErrorDetails(code=err.code or err.type, message=err.message),
            }
        )
        yield events.lifecycle("response.failed", failed)
        return
    if stats is None:
        raise EngineStoppedError("the stream ended without its final chunk")
    for event in _ending(events, stats):
        yield event
    final = finished(response, events.items, stats, cached_prompt)
    on_done(final)
    yield events.lifecycle(
        "response.incomplete" if final.status == "incomplete" else "response.completed", final
    )


def _chunk_events(events: ResponseEvents, split: CallSplitter, chunk: Chunk, native: bool) -> list[Event]:
    out = events.add(ReasoningItem, chunk.reasoning) if chunk.reasoning else []
    for event in call_events(split, chunk, native):
        if event[0] == "text":
            out += events.add(MessageItem, event[1])
        elif event[0] == "call":
            out += events.add(FunctionCallItem, "", name=event[2])
        else:
            out += events.add(FunctionCallItem, event[2])
    return out


def _ending(events: ResponseEvents, stats: GenerationStats) -> Sequence[Event]:
    """Close the last item ('incomplete' when the limit cut it); a reply with no message at
    all gets an empty one, as a non-streamed response has."""
    status = "incomplete" if stats.finish_reason == "length" else "completed"
    out: list[Event] = []
    said = (MessageItem, FunctionCallItem, CustomToolCallItem)
    if not any(isinstance(i, said) for i in [*events.items, events.open] if i):
        out += events.add(MessageItem, "")
    return [*out, *events.close(status)]
