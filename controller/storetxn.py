"""One write transaction of the store's connection (controller/store.py): BEGIN IMMEDIATE ... COMMIT, rolled back on
any exception, and what to do when the disk refuses the COMMIT or the ROLLBACK."""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger("canopy.store")


class Unlocked:
    def acquire(self):
        pass

    def release(self):
        pass


class Transaction:
    """Take the store lock (none: the caller holds it), BEGIN IMMEDIATE ... COMMIT, rolled back on any
    exception."""

    def __init__(self, db, lock=Unlocked()):
        self.db = db
        self.lock = lock

    def __enter__(self):
        self.lock.acquire()
        try:
            if self.db.in_transaction:  # left open by a rollback the disk refused: end it first
                self.db.execute("ROLLBACK")
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, exc_type, exc, tb):
        """COMMIT, or ROLLBACK on an exception; a COMMIT the disk refuses is rolled back and raised. SQLite may have
        rolled back itself (SQLITE_FULL): then there is nothing to roll back, and the first error is the one raised."""
        try:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            self.lock.release()
        return False

    def _rollback(self):
        """ROLLBACK unless SQLite already did (SQLITE_FULL ends the transaction itself); a failed one is left for
        ``__enter__`` of the next transaction to finish."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("rolling back a refused transaction failed too; the next one rolls it back first")
