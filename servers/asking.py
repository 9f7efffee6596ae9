"""Tools and a prompt that ask the user, the client's model or the client's roots (docs/asking.md).

Served by servers/asking.yaml. Each question is a resolver: a plain function that returns
`Elicit` (ask the user), `Sample` (ask the client's model) or `ListRoots` (ask for the
client's roots). A parameter annotated `Annotated[T, Resolve(resolver)]` receives the answer;
the client never sends it as an argument. The same code serves both protocol generations.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp_types import CreateMessageResult, ElicitRequestURLParams, ListRootsResult, SamplingMessage, TextContent
from pydantic import BaseModel, Field


class Booking(BaseModel):
    guests: int = Field(ge=1, le=12, description="How many people?")
    confirm: bool = Field(description="Book it?")


def ask_booking(restaurant: str) -> Elicit[Booking]:
    return Elicit(f"Book a table at {restaurant}?", Booking)


def book_table(restaurant: str, booking: Annotated[Booking, Resolve(ask_booking)]) -> str:
    """Book a table; asks the user how many guests, and to confirm"""
    if not booking.confirm:
        return "Not booked."
    return f"Booked a table for {booking.guests} at {restaurant}."


def ask_tagline(project: str) -> Sample:
    question = SamplingMessage(role="user", content=TextContent(type="text", text=f"A tagline for {project}?"))
    return Sample([question], max_tokens=60)


def client_roots() -> ListRoots:
    return ListRoots()


def describe_project(
    project: str,
    tagline: Annotated[CreateMessageResult, Resolve(ask_tagline)],
    roots: Annotated[ListRootsResult, Resolve(client_roots)],
) -> str:
    """Describe a project: the client's model writes the tagline, the client's roots say where it lives"""
    text = tagline.content.text if isinstance(tagline.content, TextContent) else ""
    where = ", ".join(str(root.uri) for root in roots.roots) or "nowhere"
    return f"{project}: {text} (in {where})"


class Audience(BaseModel):
    audience: str = Field(description="Who will read it?")


def ask_audience() -> Elicit[Audience]:
    return Elicit("Who is the summary for?", Audience)


def summary(topic: str, reader: Annotated[Audience, Resolve(ask_audience)]) -> str:
    """A prompt that asks who the summary is for before it is rendered"""
    return f"Summarize {topic} for {reader.audience}."


CONNECTED: set[str] = set()  # who has connected their calendar (a real server keeps this in its store)


def calendar_events(day: str) -> str:
    """Read a day of your calendar; the first time, the user connects it in the browser (URL mode)"""
    if "me" not in CONNECTED:
        raise UrlElicitationRequiredError(
            [
                ElicitRequestURLParams(
                    message="Connect your calendar, then try again",
                    url="https://calendar.example.com/connect",
                    elicitation_id="calendar-connect",
                )
            ]
        )
    return f"Nothing on {day}."
