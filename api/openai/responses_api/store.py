"""The bounded in-memory store of Responses API responses (`store: true`): each response with the
conversation it ends (for previous_response_id) and its input items, least recently used out
first. Made per app (create_app); lost with the process. Knows no HTTP."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from api.openai.responses_api.objects import CustomToolCallItem, FunctionCallItem, MessageItem, ResponseObject
from workbench.engine import Message
from workbench.engine.structured.tools import call_text


@dataclass(frozen=True)
class StoredResponse:
    response: ResponseObject
    conversation: tuple[Message, ...]  # every turn so far, this response's output included
    input_items: tuple[dict[str, Any], ...]


class ResponseStore:
    """At most `capacity` responses; a get counts as a use."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, stored: StoredResponse) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[stored.response.id] = stored
            self._items.move_to_end(stored.response.id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        with self._lock:
            stored = self._items.get(response_id)
            if stored is not None:
                self._items.move_to_end(response_id)
            return stored

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._items.pop(response_id, None) is not None


def output_turns(response: ResponseObject) -> tuple[Message, ...]:
    """A response's output as the assistant turn the next prompt shows (its text, then its
    calls as the model writes them); reasoning is left out, as templates drop it."""
    parts = []
    for item in response.output:
        if isinstance(item, MessageItem) and item.content and item.content[0].text:
            parts.append(item.content[0].text)
        elif isinstance(item, FunctionCallItem):
            parts.append(call_text(item.name, item.arguments))
        elif isinstance(item, CustomToolCallItem):
            parts.append(call_text(item.name, json.dumps({"input": item.input})))
    return (Message("assistant", "\n".join(parts)),) if parts else ()
