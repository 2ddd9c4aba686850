"""The in-process cache of file-list pages: what it serves, what it refuses to keep."""

from __future__ import annotations

import asyncio

import pytest

from app.services.filecache import EVERYONE, FilePageCache

ALICE = (1, 20, 0, None)
ALICE_DONE = (1, 20, 0, "completed")
BOB = (2, 20, 0, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def listening(ttl: float = 5.0, **kwargs: object) -> tuple[FilePageCache, Clock]:
    clock = Clock()
    cache = FilePageCache(ttl, clock=clock, **kwargs)  # type: ignore[arg-type]
    cache.subscribed = True
    return cache, clock


def test_nothing_is_kept_or_served_while_changes_are_not_heard() -> None:
    cache = FilePageCache(5.0)
    assert not cache.enabled
    assert cache.put(ALICE, b"page", cache.token(1)) is False
    cache.subscribed = True
    assert cache.put(ALICE, b"page", cache.token(1)) is True
    cache.subscribed = False
    assert cache.get(ALICE) is None


def test_a_zero_lifetime_turns_the_cache_off() -> None:
    cache, _ = listening(ttl=0)
    assert not cache.enabled
    assert cache.put(ALICE, b"page", cache.token(1)) is False


def test_a_kept_page_is_served_until_it_expires() -> None:
    cache, clock = listening(ttl=5.0)
    assert cache.get(ALICE) is None
    assert cache.put(ALICE, b"page", cache.token(1))
    assert cache.get(ALICE) == b"page"
    clock.now += 4.9
    assert cache.get(ALICE) == b"page"
    clock.now += 0.2
    assert cache.get(ALICE) is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_a_change_drops_every_page_of_that_user_only() -> None:
    cache, _ = listening()
    for key in (ALICE, ALICE_DONE, BOB):
        cache.put(key, repr(key).encode(), cache.token(key[0]))
    cache.heard(b"1")
    assert cache.get(ALICE) is None
    assert cache.get(ALICE_DONE) is None
    assert cache.get(BOB) == repr(BOB).encode()


def test_a_page_read_before_a_change_is_not_kept_after_it() -> None:
    """The read started, the change was announced, then the read finished: that page may
    miss the change, so it is not stored (the next read goes to the database)."""
    cache, _ = listening()
    token = cache.token(1)
    cache.drop(1)
    assert cache.put(ALICE, b"stale", token) is False
    assert cache.get(ALICE) is None
    assert cache.put(ALICE, b"fresh", cache.token(1)) is True
    assert cache.get(ALICE) == b"fresh"


def test_a_read_across_a_reconnect_is_not_kept() -> None:
    cache, _ = listening()
    token = cache.token(1)
    cache.clear()  # the feed was lost and came back: changes may have been missed
    assert cache.put(ALICE, b"stale", token) is False


def test_everyone_clears_all_and_garbage_is_ignored() -> None:
    cache, _ = listening()
    cache.put(ALICE, b"a", cache.token(1))
    cache.put(BOB, b"b", cache.token(2))
    cache.heard(b"not a user id")
    assert cache.get(BOB) == b"b"
    cache.heard(EVERYONE)
    assert cache.get(ALICE) is None
    assert cache.get(BOB) is None


def test_the_number_of_pages_is_bounded() -> None:
    cache, _ = listening(max_entries=3)
    for user in range(3):
        assert cache.put((user, 20, 0, None), b"x", cache.token(user))
    # Full: everything goes (cheaper than tracking use), the next reads fill it again.
    assert cache.put((9, 20, 0, None), b"x", cache.token(9)) is False
    assert all(cache.get((user, 20, 0, None)) is None for user in range(3))
    assert cache.put((9, 20, 0, None), b"x", cache.token(9)) is True


async def settle() -> None:
    """Let the background read and its completion callback run."""
    for _ in range(5):
        await asyncio.sleep(0)


class Loader:
    """A page read that finishes when the test says so."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.body = b"page"

    async def __call__(self) -> bytes:
        self.calls += 1
        number = self.calls
        await self.release.wait()
        return self.body + str(number).encode()


async def test_concurrent_misses_of_a_page_share_one_read() -> None:
    cache, _ = listening()
    load = Loader()
    waiting = [asyncio.create_task(cache.fetch(ALICE, load)) for _ in range(20)]
    await asyncio.sleep(0)
    load.release.set()
    assert await asyncio.gather(*waiting) == [b"page1"] * 20
    assert load.calls == 1
    assert await cache.fetch(ALICE, load) == b"page1"  # kept
    assert load.calls == 1


async def test_a_request_after_a_change_does_not_wait_for_a_read_from_before_it() -> None:
    cache, _ = listening()
    load = Loader()
    before = asyncio.create_task(cache.fetch(ALICE, load))
    await asyncio.sleep(0)
    cache.drop(1)  # the uploader's change, announced while that read runs
    after = asyncio.create_task(cache.fetch(ALICE, load))
    await asyncio.sleep(0)
    load.release.set()
    assert (await before, await after) == (b"page1", b"page2")
    assert load.calls == 2
    assert await cache.fetch(ALICE, load) == b"page2"  # only the read after the change is kept


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    cache, _ = listening()

    async def refused() -> bytes:
        await asyncio.sleep(0)
        raise PermissionError("inactive")

    waiting = [asyncio.create_task(cache.fetch(ALICE, refused)) for _ in range(3)]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, PermissionError) for r in results)
    load = Loader()
    load.release.set()
    assert await cache.fetch(ALICE, load) == b"page1"


async def test_a_waiter_that_goes_away_leaves_the_read_to_the_others() -> None:
    cache, _ = listening()
    load = Loader()
    first = asyncio.create_task(cache.fetch(ALICE, load))
    second = asyncio.create_task(cache.fetch(ALICE, load))
    await asyncio.sleep(0)
    first.cancel()
    load.release.set()
    assert await second == b"page1"
    assert first.cancelled()
    assert load.calls == 1


async def test_without_the_change_feed_every_request_reads() -> None:
    cache = FilePageCache(5.0)
    load = Loader()
    load.release.set()
    assert await asyncio.gather(cache.fetch(ALICE, load), cache.fetch(ALICE, load)) == [
        b"page1",
        b"page2",
    ]


async def test_an_expired_page_is_answered_while_one_read_refreshes_it() -> None:
    cache, clock = listening(ttl=5.0)
    load = Loader()
    load.release.set()
    assert await cache.fetch(ALICE, load) == b"page1"
    clock.now += 6
    # Expired: the old page at once, and one read in the background for everyone.
    assert await asyncio.gather(*(cache.fetch(ALICE, load) for _ in range(5))) == [b"page1"] * 5
    await settle()
    assert load.calls == 2
    assert await cache.fetch(ALICE, load) == b"page2"
    assert (cache.misses, cache.stale) == (1, 5)


async def test_an_expired_page_whose_refresh_is_refused_is_not_answered_again() -> None:
    cache, clock = listening(ttl=5.0)
    load = Loader()
    load.release.set()
    await cache.fetch(ALICE, load)
    clock.now += 6

    async def refused() -> bytes:
        raise PermissionError("deactivated")

    assert await cache.fetch(ALICE, refused) == b"page1"  # the refresh starts
    await settle()
    with pytest.raises(PermissionError):
        await cache.fetch(ALICE, refused)


async def test_a_detached_read_that_fails_leaves_the_newer_page_alone() -> None:
    cache, _ = listening()
    gate = asyncio.Event()

    async def slow_refusal() -> bytes:
        await gate.wait()
        raise PermissionError("from before the change")

    before = asyncio.create_task(cache.fetch(ALICE, slow_refusal))
    await asyncio.sleep(0)
    cache.drop(1)
    load = Loader()
    load.release.set()
    assert await cache.fetch(ALICE, load) == b"page1"
    gate.set()
    with pytest.raises(PermissionError):
        await before
    await settle()
    assert cache.get(ALICE) == b"page1"
