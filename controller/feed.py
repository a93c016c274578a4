"""Change feeds: what changed since a reader last looked, for readers that keep their own results by delta.

A writer (the LiveView's View, State's remote index, the duplicate MAC flags) keeps a ``Feeds`` and records what each
change reached (``record``): an endpoint id, a (subnet, MAC), a session. A reader follows it (``follow``: its own
``Feed``, from now on) and takes what its feed holds each time it updates (``Feed.take``). A reader that has not
followed from the writer's start, or whose writer was replaced (a View built from scratch: a new object), starts from
scratch once. A feed holding more than ``LIMIT`` items forgets them and answers None (everything) at its next take:
its reader starts from scratch, and a reader that stops reading costs bounded memory. Readers are held weakly (a
reader gone, its feed goes too); recording into no feed costs one check.
"""

from __future__ import annotations

import weakref

LIMIT = 1 << 17  # items held for one reader before its feed answers "everything"


class Feed:
    """One reader's items recorded since its last ``take``."""

    def __init__(self):
        self._items: set | None = set()

    def add(self, items) -> None:
        if self._items is not None:
            self._items.update(items)
            if len(self._items) > LIMIT:
                self._items = None

    def take(self) -> set | None:
        """The items recorded since the last take (None: too many to list, take everything as changed)."""
        items, self._items = self._items, set()
        return items


class Feeds:
    """A writer's feeds, one per reader following it."""

    def __init__(self):
        self._feeds: weakref.WeakSet[Feed] = weakref.WeakSet()

    def follow(self) -> Feed:
        feed = Feed()
        self._feeds.add(feed)
        return feed

    def record(self, items) -> None:
        """``items`` (an iterable read once per feed: a set or list) changed."""
        if self._feeds:
            for feed in self._feeds:
                feed.add(items)
