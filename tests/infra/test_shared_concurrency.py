"""shared/concurrency.py: ``background`` owns its tasks (cancelled and awaited with the block, a failing job ends
the block, the block's own error is not wrapped), and ``SingleFlight`` coalesces, shares errors, survives a
cancelled leader and lets ``fresh`` callers lead."""

from __future__ import annotations

import asyncio

import pytest

from shared.concurrency import SingleFlight, background


async def test_background_jobs_end_with_the_block() -> None:
    ran = asyncio.Event()

    async def forever() -> None:
        ran.set()
        await asyncio.Event().wait()

    async with background(forever()) as tasks:
        await ran.wait()
    assert tasks[0].cancelled()


async def test_a_failing_job_ends_the_block_with_its_error() -> None:
    async def broken() -> None:
        raise RuntimeError("job failed")

    with pytest.raises(ExceptionGroup) as ei:
        async with background(broken()):
            await asyncio.Event().wait()  # cancelled by the group when the job fails
    assert [type(e) for e in ei.value.exceptions] == [RuntimeError]


async def test_the_blocks_own_error_is_not_wrapped() -> None:
    async def idle() -> None:
        await asyncio.Event().wait()

    with pytest.raises(OSError, match="port in use"):
        async with background(idle()):
            raise OSError("port in use")


async def test_single_flight_coalesces_and_fresh_callers_lead() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    both_running = asyncio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        mine = calls
        if calls == 2:
            both_running.set()  # the leader's and the fresh caller's fetches are both running
        await release.wait()
        return mine

    leader = asyncio.create_task(flight.do("k", fetch))
    follower = asyncio.create_task(flight.do("k", fetch))
    fresh = asyncio.create_task(flight.do("k", fetch, fresh=True))
    await both_running.wait()
    release.set()
    (a, a_shared), (b, b_shared), (c, c_shared) = await asyncio.gather(leader, follower, fresh)
    assert (a_shared, b_shared, c_shared) == (False, True, False)
    assert a == b and c != a and calls == 2
    assert flight.in_flight == 0


async def test_single_flight_shares_errors_and_survives_a_cancelled_leader() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    started = asyncio.Event()

    async def hang() -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    async def five() -> int:
        return 5

    leader = asyncio.create_task(flight.do("k", hang))
    await started.wait()
    follower = asyncio.create_task(flight.do("k", five))
    await asyncio.sleep(0)  # the follower is waiting on the leader's flight
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await follower == (5, False)  # it led a flight of its own, not inherited the cancellation

    async def boom() -> int:
        raise ValueError("provider said no")

    with pytest.raises(ValueError):
        await flight.do("k", boom)
    assert flight.in_flight == 0
