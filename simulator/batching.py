"""Batched inference for policies whose per-call overhead dominates (neural models).

A policy that implements ``rank_videos_batch(requests) -> list[Slate]`` and
``rank_comments_batch(requests) -> list[Slate]`` is served by a ``Batcher``: user processes submit
requests and wait on an event; every ``tick`` simulated seconds one simpy process ranks everything
queued in one call per kind. Requests are answered in submission order.
"""
from __future__ import annotations

import simpy

from .policy import CommentRequest, Policy, VideoRequest


def is_batched(policy: Policy) -> bool:
    return hasattr(policy, "rank_videos_batch") and hasattr(policy, "rank_comments_batch")


class Batcher:
    def __init__(self, env: simpy.Environment, policy: Policy, tick: float):
        self.env, self.policy, self.tick = env, policy, tick
        self.queue: dict[str, list] = {"video": [], "comment": []}
        self.waiting = False
        self.batches = 0
        self.served = 0

    def videos(self, request: VideoRequest) -> simpy.Event:
        return self._submit("video", request)

    def comments(self, request: CommentRequest) -> simpy.Event:
        return self._submit("comment", request)

    def _submit(self, kind: str, request) -> simpy.Event:
        event = self.env.event()
        self.queue[kind].append((request, event))
        if not self.waiting:
            self.waiting = True
            self.env.process(self._serve())
        return event

    def _serve(self):
        # wake at the next tick boundary, then answer everything queued by then
        now = self.env.now
        next_tick = (int(now // self.tick) + 1) * self.tick
        yield self.env.timeout(next_tick - now)
        self.waiting = False
        for kind, rank in (("video", self.policy.rank_videos_batch), ("comment", self.policy.rank_comments_batch)):
            pending, self.queue[kind] = self.queue[kind], []
            if pending:
                slates = rank([request for request, _ in pending])
                self.batches += 1
                self.served += len(pending)
                for (_, event), slate in zip(pending, slates):
                    event.succeed(slate)
