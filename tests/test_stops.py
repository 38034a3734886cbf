"""StopBuffer: stop strings matched on text across token boundaries, never emitted."""

from __future__ import annotations

from workbench.engine.stops import StopBuffer


def feed(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    buf = StopBuffer(stops)
    out = ""
    for piece in pieces:
        text, stopped = buf.push(piece)
        out += text
        if stopped:
            return out, True
    return out + buf.flush(), False


def test_stop_split_across_pieces_is_caught_and_not_emitted() -> None:
    assert feed(["END"], ["Hello E", "N", "D and more"]) == ("Hello ", True)


def test_earliest_of_several_stops_wins() -> None:
    assert feed(["b", "xyz"], ["axy", "zb"]) == ("a", True)


def test_partial_match_that_fails_is_released() -> None:
    buf = StopBuffer(["<|end|>"])
    assert buf.push("a <|e") == ("a ", False)  # "<|e" could start the stop: held back
    assert buf.push("nd of line") == ("<|end of line", False)
    assert buf.flush() == ""


def test_no_stops_passes_text_through() -> None:
    assert feed([], ["a", "b"]) == ("ab", False)


def test_held_text_is_flushed_at_the_end() -> None:
    assert feed(["STOP"], ["fin", "al ST"]) == ("final ST", False)


def test_the_stop_that_matched_is_recorded() -> None:
    buf = StopBuffer(["xyz", "b"])
    assert buf.matched is None
    assert buf.push("axy") == ("a", False)
    assert buf.push("zb") == ("", True)
    assert buf.matched == "xyz"  # the earliest in the text, not the first given
    none = StopBuffer(["STOP"])
    none.push("no stop here")
    assert none.matched is None
