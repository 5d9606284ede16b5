"""``push()``, the one way worker code reaches browsers, in both of its modes.

Server-loop mode (the embedded process): the message is handed to the ASGI server's event loop.
Background-loop mode (scaled workers, commands): one long-lived loop per process. Both are run
here against the in-memory channel layer; the scaled smoke test covers Redis end to end.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from console import push as push_module
from console.push import group_name, push

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}}  # fmt: skip


class LoopThread:
    """An event loop running in its own thread, like uvicorn's loop in the embedded process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop")
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def close(self) -> None:
        self.stop()
        if not self.loop.is_closed():
            self.loop.close()


@pytest.fixture(autouse=True)
def in_memory_layer(request, settings) -> Iterator[None]:
    if not request.node.get_closest_marker("scaled"):
        settings.CHANNEL_LAYERS = IN_MEMORY  # channels drops its cached layer on this change
    yield
    push_module.set_server_loop(None)


@pytest.fixture
def server_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    push_module.set_server_loop(loop.loop)
    yield loop
    push_module.set_server_loop(None)
    loop.close()


async def _subscribe(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def _receive(channel: str, count: int, timeout: float = 10.0) -> list[dict]:
    layer = get_channel_layer()
    return [await asyncio.wait_for(layer.receive(channel), timeout) for _ in range(count)]


def test_server_loop_mode_delivers_every_message_in_order(server_loop: LoopThread):
    group = group_name("build", 42, "log")
    channel = server_loop.run(_subscribe(group))
    receiving = asyncio.run_coroutine_threadsafe(_receive(channel, 300), server_loop.loop)

    started = time.monotonic()
    results = [push(group, {"type": "log.line", "seq": i}) for i in range(300)]
    elapsed = time.monotonic() - started

    assert all(results)
    received = receiving.result(10)
    # More than the in-memory layer's default capacity of 100: nothing silently dropped.
    assert [m["seq"] for m in received] == list(range(300))
    print(f"\n300 pushes through the server loop in {1000 * elapsed:.1f} ms")


def test_server_loop_mode_does_not_start_a_background_loop(server_loop: LoopThread):
    before = [t for t in threading.enumerate() if t.name == "steward-push-loop"]
    channel = server_loop.run(_subscribe("executors"))
    assert push("executors", {"type": "executors.changed"})
    assert server_loop.run(_receive(channel, 1)) == [{"type": "executors.changed"}]
    after = [t for t in threading.enumerate() if t.name == "steward-push-loop"]
    assert after == before


def test_push_from_worker_threads_through_the_server_loop(server_loop: LoopThread):
    """Celery's threads pool: several threads pushing at once, all through the one loop."""
    channel = server_loop.run(_subscribe("node-7-log"))
    receiving = asyncio.run_coroutine_threadsafe(_receive(channel, 8 * 50), server_loop.loop)
    results: list[bool] = []

    def work(n: int) -> None:
        results.extend(push("node-7-log", {"type": "log.line", "n": n, "i": i}) for i in range(50))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 400 and all(results)
    received = receiving.result(10)
    for n in range(8):  # each thread's messages arrive in the order it sent them
        assert [m["i"] for m in received if m["n"] == n] == list(range(50))


def test_push_from_the_server_loop_itself_does_not_deadlock(server_loop: LoopThread):
    channel = server_loop.run(_subscribe("executors"))

    async def from_async_code() -> bool:
        return push("executors", {"type": "executors.changed", "from": "loop"})

    assert server_loop.run(from_async_code(), timeout=2) is True
    assert server_loop.run(_receive(channel, 1)) == [{"type": "executors.changed", "from": "loop"}]


def test_push_after_the_server_loop_stopped_returns_false_at_once(server_loop: LoopThread):
    server_loop.stop()
    started = time.monotonic()
    assert push("executors", {"type": "executors.changed"}) is False
    assert time.monotonic() - started < 0.1


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_push_while_the_server_loop_stops_gives_up_quickly(server_loop: LoopThread):
    """The loop is still running when push() looks, but stops before it runs the send (a
    shutdown racing a task): push() must not sit out its whole timeout."""
    loop = server_loop.loop
    # Keep the loop busy for 0.3 s, then stop it: the send is queued behind and never runs.
    loop.call_soon_threadsafe(lambda: (time.sleep(0.3), loop.stop()))
    time.sleep(0.05)
    assert loop.is_running()
    started = time.monotonic()
    assert push("executors", {"type": "executors.changed"}) is False
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, f"push() waited {elapsed:.2f} s for a stopped loop"
    assert elapsed < push_module.PUSH_TIMEOUT


def test_push_after_the_server_loop_closed_returns_false(server_loop: LoopThread):
    server_loop.close()
    assert push("executors", {"type": "executors.changed"}) is False


def test_background_loop_mode_delivers_and_uses_one_loop_per_process():
    push_module.set_server_loop(None)
    group = group_name("build", 7, "log")
    first_loop = push_module._background_loop()
    channel = asyncio.run_coroutine_threadsafe(_subscribe(group), first_loop).result(5)
    receiving = asyncio.run_coroutine_threadsafe(_receive(channel, 200), first_loop)

    results: list[bool] = []

    def work(n: int) -> None:
        results.extend(push(group, {"type": "log.line", "n": n, "i": i}) for i in range(50))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(results) == 200 and all(results)
    assert len(receiving.result(10)) == 200
    # One loop for the whole process, not one per call or per thread.
    assert push_module._background_loop() is first_loop
    assert [t.name for t in threading.enumerate()].count("steward-push-loop") == 1


def test_group_names():
    assert group_name("build", 42, "log") == "build-42-log"
    assert group_name("node", "7") == "node-7"
    assert group_name("executors") == "executors"


@pytest.mark.scaled
def test_background_loop_mode_through_redis():
    """A scaled worker's pushes: the background loop and the Redis channel layer (its
    connections live in that one loop, so they are reused instead of opened per push)."""
    if "Redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.fail("needs REDIS_URL (the Redis channel layer); `make test-scaled` sets it")
    push_module.set_server_loop(None)
    group = group_name("build", uuid.uuid4().hex, "log")
    bg = push_module._background_loop()
    channel = asyncio.run_coroutine_threadsafe(_subscribe(group), bg).result(5)
    receiving = asyncio.run_coroutine_threadsafe(_receive(channel, 200), bg)

    def work(n: int) -> None:
        for i in range(50):
            assert push(group, {"type": "log.line", "n": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    received = receiving.result(20)
    elapsed = time.monotonic() - started
    for n in range(4):
        assert [m["i"] for m in received if m["n"] == n] == list(range(50))
    assert push_module._background_loop() is bg
    print(f"\n200 pushes through Redis from 4 threads in {1000 * elapsed:.0f} ms")
