"""Exactly-once, in-order delivery of transitions from actors to the learner (go-back-N over DDS).

DDS delivers reliably only while both sides run; a transition published while the learner is down is
lost, and a learner that crashes loses what it received since its last checkpoint. So the actor keeps
every transition in a bounded :class:`Outbox` until the learner reports it *durable* (in a
checkpoint), and the learner's latched status carries two acknowledgements per actor session:
``received`` (in order so far: the actor sends ahead of it, at most ``window`` transitions) and
``durable``. When ``received`` stops advancing for ``resend_s`` or falls back (a learner restarted
from its checkpoint), the actor sends again from the first transition the learner lacks. The
learner's :class:`Inbox` accepts a session's transitions only in sequence order and ignores
duplicates, so resends never double-count. A full outbox drops its oldest transitions (counted);
each batch names the oldest one the actor still holds (``base``), so the learner skips what was
dropped.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from robot_stack.policies.hil.transport import TransitionBatch


class Outbox:
    """The actor's side: numbered transitions waiting until the learner has them in a checkpoint."""

    def __init__(self, actor: str, session: str, capacity: int = 100_000, batch: int = 64, window: int = 1024,
                 resend_s: float = 2.0, clock: Any = time.monotonic):
        self.actor, self.session = actor, session
        self.capacity, self.batch, self.window, self.resend_s, self.clock = capacity, batch, window, resend_s, clock
        self.items: deque = deque()
        self.base = 0  # sequence number of items[0]
        self.next_send = 0  # sequence number of the next item to send
        self.received = -1  # the learner holds everything up to here (not yet durable)
        self.dropped = self.resends = 0
        self.last_progress = clock()

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Any) -> int:
        """Queue one transition; returns its sequence number."""
        self.items.append(item)
        if len(self.items) > self.capacity:
            self.items.popleft()
            self.base += 1
            self.dropped += 1
            self.next_send = max(self.next_send, self.base)
        return self.base + len(self.items) - 1

    def ack(self, received: int, durable: int = -1) -> None:
        """The learner holds every transition up to ``received`` and has checkpointed those up to ``durable``."""
        n = min(durable + 1 - self.base, len(self.items))
        for _ in range(max(n, 0)):
            self.items.popleft()
        self.base += max(n, 0)
        if received > self.received:
            self.last_progress = self.clock()
            self.next_send = max(self.next_send, received + 1)
        elif received < self.received:  # the learner restarted from a checkpoint: send again from there
            self.next_send = received + 1
            self.last_progress = self.clock()
        self.received = received
        self.next_send = max(self.next_send, self.base)

    def batches(self) -> list[TransitionBatch]:
        """Batches to publish now: what was not sent yet, at most ``window`` ahead of what the learner has;
        everything it lacks again when its acknowledgement did not advance for ``resend_s``."""
        now = self.clock()
        first_missing = max(self.received + 1, self.base)
        if self.next_send <= first_missing:  # nothing in flight: the timeout starts with this send
            self.next_send = first_missing
            self.last_progress = now
        elif now - self.last_progress > self.resend_s:
            self.next_send = first_missing  # go back N
            self.last_progress = now
            self.resends += 1
        out = []
        end = min(self.base + len(self.items), first_missing + self.window)
        while self.next_send < end:
            start = self.next_send - self.base
            chunk = [self.items[i] for i in range(start, min(start + self.batch, end - self.base))]
            out.append(TransitionBatch(self.actor, self.session, self.base, self.next_send, chunk))
            self.next_send += len(chunk)
        return out


class Inbox:
    """The learner's side: per actor session, the last sequence number received in order (``acks``);
    ``durable`` is a copy of ``acks`` taken when a checkpoint is written (``checkpointed()``)."""

    def __init__(self, acks: dict[str, int] | None = None, max_sessions: int = 64):
        self.acks: dict[str, int] = dict(acks or {})
        self.durable: dict[str, int] = dict(self.acks)
        self.max_sessions = max_sessions
        self.duplicates = 0
        self.gaps = 0

    def accept(self, batch: TransitionBatch) -> list[Any]:
        """The batch's items that are new and in order (possibly none)."""
        last = max(self.acks.get(batch.session, batch.base - 1), batch.base - 1)
        if batch.first > last + 1:  # something in between was lost: wait for the resend
            self.gaps += 1
            self._set(batch.session, last)
            return []
        skip = last + 1 - batch.first
        self.duplicates += min(skip, len(batch.items))
        new = batch.items[skip:]
        self._set(batch.session, last + len(new))
        return new

    def _set(self, session: str, last: int) -> None:
        self.acks.pop(session, None)
        self.acks[session] = last  # most recent session last
        while len(self.acks) > self.max_sessions:
            self.acks.pop(next(iter(self.acks)))

    def checkpointed(self) -> dict[str, int]:
        """Everything accepted so far is in a checkpoint now; returns the acks to store with it."""
        self.durable = dict(self.acks)
        return dict(self.durable)
