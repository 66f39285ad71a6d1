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
