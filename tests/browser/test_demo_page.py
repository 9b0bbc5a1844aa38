"""The demo page as a person uses it, in real Chromium: a page open through a server restart
shows the room as a reload would; the nickname dialog takes what the server takes, and leaves
the focus where the next message is typed; "change" asks again; the message list stays bounded;
a message of spaces alone is kept and refused in words."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser.conftest import Chat
from tests.support.server import LadderServer

DEMO = "ladder.demo.app:app"


@pytest.fixture
def pages(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Fresh browser contexts (separate people), each with a page not yet opened."""
    contexts: list[BrowserContext] = []

    def new_page() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        return context.new_page()

    yield new_page
    for context in contexts:
        context.close()


def test_a_page_open_through_a_server_restart_shows_what_a_reload_shows(browser: Browser) -> None:
    """The memory engine loses every session and the room's history with the process: the page
    that lived through it shows the room as the server has it now (messages published while it
    was away included, the ones before gone), and its own messages once each."""
    contexts: list[BrowserContext] = []

    def person(nick: str) -> Chat:
        context = browser.new_context()
        contexts.append(context)
        return Chat(context, context.new_page(), nick).goto(server, "restart")

    with LadderServer(app=DEMO) as server:
        try:
            ada, bob = person("ada"), person("bob")
            ada.wait_transport("websocket")
            bob.wait_transport("websocket")
            ada.send(*(f"before {n}" for n in range(6)))  # offsets 1 to 6 of the first epoch
            bob.wait_messages(6)

            server.kill()
            ada.page.wait_for_function("demo.client.state !== 'connected'")
            ada.context.set_offline(True)  # ada comes back once the room has moved on
            ada.page.evaluate("texts => texts.forEach(t => demo.send(t))", ["while down 0", "while down 1"])
            server.start()
            bob.send(*(f"after restart {n}" for n in range(3)))  # offsets 1 to 3 of the new epoch
            ada.context.set_offline(False)

            now = [f"after restart {n}" for n in range(3)] + ["while down 0", "while down 1"]
            for chat in (ada, bob):
                chat.page.wait_for_function(
                    """want => JSON.stringify(demo.messages().map(m => m.text)) === JSON.stringify(want)
                        && document.querySelectorAll('#outbox li').length === 0""",
                    arg=now,
                    timeout=15_000,
                )
            reloaded = person("cy")
            reloaded.wait_messages(len(now))
            assert ada.messages() == reloaded.messages() == bob.messages()
            assert [m["offset"] for m in ada.messages()] == [1, 2, 3, 4, 5]
            log = ada.log()
            assert "room:restart: history lost, refetching" in log
            assert "typing:restart: history lost" not in log, "a channel without history lost nothing"
            assert ada.page.inner_text("#room-status").endswith("earlier messages from history")
            assert not ada.errors and not bob.errors and not reloaded.errors
        finally:
            for context in contexts:
                context.close()


@pytest.mark.parametrize("query", ["", "?nick=ada"])
def test_change_asks_for_another_nickname(demo: LadderServer, pages: Callable[[], Page], query: str) -> None:
    """On a page at /#room (no query), "change" was a same-document navigation: nothing happened."""
    page = pages()
    page.goto(f"{demo.url}/{query}#renaming")
    if "nick=" not in query:
        page.wait_for_selector("#join[open]")
        page.keyboard.type("ada")
        page.keyboard.press("Enter")
    page.wait_for_function("window.demo && demo.client.transport")
    assert page.inner_text("#me") == "ada"

    page.click("#rename")
    page.wait_for_selector("#join[open]")  # a new page, which asks
    assert "nick=" not in page.url and page.url.endswith("#renaming")
    page.keyboard.type("grace")
    page.keyboard.press("Enter")
    page.wait_for_function("window.demo && demo.client.transport")
    assert page.inner_text("#me") == "grace"
    assert page.inner_text("#room-title") == "#renaming"


@pytest.mark.parametrize("name", ["Zoë", "שלום", "名前", "ada_lovelace-1.0"])
def test_the_nickname_dialog_takes_what_the_server_takes(
    demo: LadderServer, pages: Callable[[], Page], name: str
) -> None:
    page = pages()
    page.goto(f"{demo.url}/?share=0#nicknames")
    page.wait_for_selector("#join[open]")
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    page.wait_for_function("window.demo && demo.client.transport")  # the server took it
    assert page.inner_text("#me") == name
    assert page.evaluate("demo.client.user") == name


def test_the_nickname_dialog_says_its_rule(demo: LadderServer, pages: Callable[[], Page]) -> None:
    page = pages()
    page.goto(f"{demo.url}/?share=0#nicknames")
    page.wait_for_selector("#join[open]")
    rule = "1 to 24 letters, digits, spaces, _ . or -"
    assert page.get_attribute("#nick", "title") == rule
    for refused in ("ada!", "x" * 25):
        page.fill("#nick", refused)
        page.keyboard.press("Enter")
        assert page.evaluate("document.querySelector('#join').open"), refused
        assert page.evaluate("document.querySelector('#nick').validationMessage") == rule


def test_after_the_dialog_the_message_input_has_the_focus(demo: LadderServer, pages: Callable[[], Page]) -> None:
    page = pages()
    page.goto(f"{demo.url}/?share=0#focus")
    page.wait_for_selector("#join[open]")
    page.keyboard.type("kay")
    page.keyboard.press("Enter")
    page.wait_for_function("window.demo && demo.client.transport")
    assert page.evaluate("document.activeElement.id") == "text"
    page.keyboard.type("typed at once")
    page.keyboard.press("Enter")
    page.wait_for_function("demo.messages().some(m => m.text === 'typed at once')")


def test_a_focused_switch_shows_a_ring(people: Callable[..., Chat]) -> None:
    ada = people("ada", "ring")
    ada.page.focus("#burst")
    ada.page.keyboard.press("Shift+Tab")  # back to the last switch, by keyboard
    ring = ada.page.evaluate(
        """() => {
            const focused = document.activeElement;
            const style = getComputedStyle(focused.closest('.switch'));
            return [focused.dataset.block, style.outlineStyle, parseFloat(style.outlineWidth)];
        }"""
    )
    assert ring[0] == "offline"
    assert ring[1] == "solid" and ring[2] >= 2


def test_the_list_keeps_the_newest_500_messages(people: Callable[..., Chat]) -> None:
    ada = people("ada", "long-talk")
    bob = people("bob", "long-talk")
    ada.wait_transport("websocket")
    assert ada.page.is_hidden("#older")
    bob.send(*(f"n {n}" for n in range(1, 521)))
    ada.page.wait_for_function("demo.messages().at(-1)?.offset === 520", timeout=30_000)
    shown = ada.messages()
    assert [m["offset"] for m in shown] == list(range(21, 521)), "the newest 500, in order"
    assert ada.page.is_visible("#older")
    assert "newest 500" in ada.page.inner_text("#older")


def test_answers_that_come_while_the_room_list_is_empty_raise_no_page_error(
    people: Callable[..., Chat],
) -> None:
    """Messages sent, then another room opened at once: their answers come while the list is
    empty (a new room) and some of them are not answered yet. Those have no position; each
    answer threw reading the empty list for them (seen under load, as a page sent before its
    room's subscription was live)."""
    ada = people("ada", "first-room")
    ada.wait_transport("websocket")
    offsets = ada.page.evaluate(
        """async () => {
            const sent = ["one", "two", "three"].map((text) => demo.send(text));
            demo.join("second-room");
            return (await Promise.all(sent)).map((r) => r.offset);
        }"""
    )
    assert offsets == [1, 2, 3]
    ada.page.wait_for_function("document.querySelector('#room-status').textContent === 'a new room'")
    assert ada.messages() == []
    assert ada.errors == []


def test_a_message_of_spaces_alone_is_kept_and_refused_in_words(people: Callable[..., Chat]) -> None:
    ada = people("ada", "spaces")
    ada.wait_transport("websocket")
    ada.page.fill("#text", "   ")
    ada.page.press("#text", "Enter")
    assert ada.page.input_value("#text") == "   "
    assert ada.page.evaluate("document.querySelector('#text').validationMessage") == "a message needs more than spaces"
    assert ada.page.locator("#outbox li").count() == 0
    ada.page.fill("#text", "  now words  ")  # typing again clears the refusal
    ada.page.press("#text", "Enter")
    ada.page.wait_for_function("demo.messages().some(m => m.text === 'now words')")
    assert ada.page.input_value("#text") == ""
