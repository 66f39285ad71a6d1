"""ThreadOwnedPool's urgent waiters (a reply's first TTS piece) go ahead of the others."""

import asyncio
import threading

from voice_pipeline.threads import ThreadOwnedPool


async def test_urgent_waiters_go_first_in_their_own_order_and_the_rest_keep_theirs():
    pool = ThreadOwnedPool(["voice"], thread_name_prefix="test")
    gate = threading.Event()
    order: list[str] = []

    async def use(name: str, urgent: bool) -> None:
        async for _ in pool.stream(lambda voice: [name], urgent=urgent):
            order.append(name)

    def hold(voice: str) -> list[str]:
        gate.wait(5)
        return []

    async def holder() -> None:
        async for _ in pool.stream(hold):
            pass

    tasks = [asyncio.create_task(holder())]
    await asyncio.sleep(0.05)  # the holder has the only resource
    for name, urgent in [("later-1", False), ("first-A", True), ("later-2", False), ("first-B", True)]:
        tasks.append(asyncio.create_task(use(name, urgent)))
        await asyncio.sleep(0.01)
    cancelled = asyncio.create_task(use("first-cancelled", True))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    tasks.append(asyncio.create_task(use("first-C", True)))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["first-A", "first-B", "first-C", "later-1", "later-2"]
    assert pool.free_count == 1 and pool._urgent_waiting == 0
    pool.close()


def _native_threads() -> dict[int, int]:
    """Every thread of this process: its id and nice value."""
    import os

    threads = {}
    for tid in os.listdir("/proc/self/task"):
        stat = open(f"/proc/self/task/{tid}/stat").read()
        threads[int(tid)] = int(stat.rsplit(")", 1)[1].split()[16])
    return threads


def _thread_nice() -> int:
    """The calling thread's nice value, from /proc (field 19 of its stat)."""
    stat = open(f"/proc/self/task/{threading.get_native_id()}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])


async def test_a_pools_threads_carry_their_names_in_the_os():
    import threading

    pool = ThreadOwnedPool(["context"], thread_name_prefix="llm", later_nice=10)

    def os_name(_context: str) -> tuple[str, str]:
        tid = threading.get_native_id()
        return threading.current_thread().name, open(f"/proc/self/task/{tid}/comm").read().strip()

    python_name, os_name_seen = await pool.run(os_name)
    assert python_name == os_name_seen == "llm_0"
    later = [t for t in threading.enumerate() if t.name.startswith("llm-later")]
    assert [open(f"/proc/self/task/{t.native_id}/comm").read().strip() for t in later] == ["llm-later_0"]
    pool.close()


def test_every_thread_of_a_pool_exists_from_the_start():
    """A thread made under load would look like a leak to anything counting threads (the storm test)."""
    import threading

    pool = ThreadOwnedPool(["voice"] * 3, thread_name_prefix="tts-start", later_nice=10)
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("tts-start"))
    assert names == ["tts-start-later_0", "tts-start-later_1", "tts-start-later_2",
                     "tts-start_0", "tts-start_1", "tts-start_2"]
    pool.close()


async def test_a_niced_pool_runs_its_calls_at_the_lower_priority_and_a_plain_one_does_not():
    niced = ThreadOwnedPool(["voice"], thread_name_prefix="later", nice=10)
    plain = ThreadOwnedPool(["voice"], thread_name_prefix="first")
    base = _thread_nice()
    assert await niced.run(lambda _voice: _thread_nice()) == min(19, base + 10)
    assert await plain.run(lambda _voice: _thread_nice()) == base
    assert _thread_nice() == base  # the event loop's thread is untouched
    niced.close()
    plain.close()


async def test_piper_speaks_a_first_piece_and_later_pieces_in_their_own_lanes():
    from voice_pipeline.app.settings import TtsSettings
    from voice_pipeline.engines.piper import PiperTts

    base = _thread_nice()
    before = _native_threads()
    tts = PiperTts(TtsSettings(workers=1, later_nice=10), threads=2)
    assert tts._later is not tts._voice and tts._later.resources[0] is not tts._voice.resources[0]
    first_lane = tts._voice.resources[0].sessions  # streamed: the voice's three stages
    later_lane = [tts._later.resources[0].voice.session]  # whole sentences, at the first lane's gain
    for session in [*first_lane, *later_lane]:  # no pool thread spins while it waits for its next operator
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    tts._voice = _Recording(tts._voice, "first")
    tts._later = _Recording(tts._later, "later")
    for text, first in (("Hello there.", True), ("And more words.", False)):
        chunks = [chunk async for chunk in tts.synthesize(text, urgent=first)]
        assert chunks and len(chunks[0]) > 0
    assert _Recording.used == ["first", "later"]
    new = {tid: nice for tid, nice in _native_threads().items() if tid not in before}
    # The later lane's pool thread and its own session's onnxruntime thread: its syntheses never
    # run at full priority (sharing the first lane's session, half of their work did).
    assert sum(nice == min(19, base + 10) for nice in new.values()) >= 2, new
    one_lane = PiperTts(TtsSettings(workers=1, later_nice=0))
    assert one_lane._later is one_lane._voice


class _Recording:
    used: list[str] = []

    def __init__(self, pool: ThreadOwnedPool, lane: str) -> None:
        self.pool, self.lane = pool, lane

    def stream(self, fn, urgent: bool = False):
        _Recording.used.append(self.lane)
        return self.pool.stream(fn, urgent=urgent)
