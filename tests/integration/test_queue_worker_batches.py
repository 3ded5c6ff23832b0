"""QueueWorker in batch mode (`batch=(handler, size, wait)`) on a real quorum queue, in a vhost
of the test's own: what is there is handed over in batches of at most `size`, each message is
settled by its own disposition (acked once, or requeued and seen again), and a batch handler
that raises requeues its batch without killing the worker."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pika
import pytest

from hub.adapters.rabbitmq.connection import queue_depths
from hub.adapters.rabbitmq.consumer import BatchHandler, QueueWorker, start_worker
from hub.wire import Disposition, Envelope
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

QUORUM = {"x-queue-type": "quorum"}


def new_queue(amqp_url: str) -> str:
    queue = f"hub.test.batches.{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().queue_declare(queue, durable=True, arguments=QUORUM)
    connection.close()
    return queue


def publish(amqp_url: str, queue: str, message_ids: Sequence[str]) -> None:
    """Persistent messages, each confirmed by the broker before this returns."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for message_id in message_ids:
        channel.basic_publish(
            "",
            queue,
            b'{"n": "%s"}' % message_id.encode(),
            pika.BasicProperties(
                message_id=message_id, delivery_mode=2, content_type="application/json"
            ),
            mandatory=True,
        )
    connection.close()


def depth(amqp_url: str, queue: str) -> int:
    return queue_depths(amqp_url, [queue])[queue]


def not_one_by_one(envelope: Envelope) -> Disposition:
    raise AssertionError("a worker in batch mode handed a message over on its own")


@contextmanager
def batch_worker(
    amqp_url: str, queue: str, handler: BatchHandler, *, size: int, prefetch: int
) -> Iterator[tuple[QueueWorker, threading.Thread]]:
    """A batch-mode worker consuming `queue`; stopped and its connection released after, so
    anything it took and did not ack is back on the queue when the block ends."""
    worker = QueueWorker(
        amqp_url, queue, not_one_by_one, prefetch=prefetch, batch=(handler, size, 0.05)
    )
    thread = start_worker(worker, f"test-{queue}")
    try:
        assert worker.ready.wait(timeout=10), "the worker did not start consuming"
        yield worker, thread
    finally:
        worker.stop()
        thread.join(timeout=10)
        worker.close()


class Recorder:
    """A batch handler that notes each batch's message ids and answers `decide(envelope)`."""

    def __init__(self, decide: Callable[[Envelope], Disposition] | None = None) -> None:
        self.decide = decide or (lambda envelope: Disposition.ACK)
        self.lock = threading.Lock()
        self.batches: list[list[str]] = []
        self.redelivered: list[str] = []

    def __call__(
        self, envelopes: Sequence[Envelope], *, stopping: Callable[[], bool]
    ) -> list[Disposition]:
        with self.lock:
            self.batches.append([e.message_id or "" for e in envelopes])
            self.redelivered += [e.message_id or "" for e in envelopes if e.redelivered]
        return [self.decide(e) for e in envelopes]

    def seen(self) -> Counter[str]:
        with self.lock:
            return Counter(m for batch in self.batches for m in batch)


def test_messages_waiting_before_the_worker_starts_come_in_batches_of_at_most_size_each_acked_once(
    amqp_url: str,
) -> None:
    queue = new_queue(amqp_url)
    ids = [f"m-{n:03d}-{uuid.uuid4().hex[:6]}" for n in range(120)]
    publish(amqp_url, queue, ids)
    assert depth(amqp_url, queue) == 120
    recorder = Recorder()

    # Prefetch above the batch size: it is `size`, not the prefetch, that bounds a batch.
    with batch_worker(amqp_url, queue, recorder, size=25, prefetch=50):
        wait_until(lambda: sum(recorder.seen().values()) >= 120, timeout=30, what="120 handled")
        time.sleep(0.3)  # a message handed over twice would show up now

    assert depth(amqp_url, queue) == 0  # released with nothing unacked: every one was acked
    assert recorder.seen() == Counter(ids)  # each handed over exactly once
    assert recorder.redelivered == []
    sizes = [len(batch) for batch in recorder.batches]
    assert max(sizes) <= 25, sizes
    assert max(sizes) > 1, sizes
    assert len(sizes) < 120, sizes
    # The queue is FIFO and nothing went back: the batches come in publish order.
    assert [m for batch in recorder.batches for m in batch] == ids


def test_a_message_the_batch_handler_requeues_comes_back_while_the_rest_are_acked(
    amqp_url: str,
) -> None:
    queue = new_queue(amqp_url)
    ids = [f"m-{n:02d}-{uuid.uuid4().hex[:6]}" for n in range(30)]
    sent_back = ids[7]
    publish(amqp_url, queue, ids)
    requeued_once = threading.Event()

    def decide(envelope: Envelope) -> Disposition:
        if envelope.message_id == sent_back and not requeued_once.is_set():
            requeued_once.set()
            return Disposition.REQUEUE
        return Disposition.ACK

    recorder = Recorder(decide)
    with batch_worker(amqp_url, queue, recorder, size=10, prefetch=10):
        wait_until(lambda: recorder.seen()[sent_back] >= 2, timeout=30, what="the requeued one")
        wait_until(lambda: sum(recorder.seen().values()) >= 31, timeout=30, what="all handled")
        time.sleep(0.3)

    assert depth(amqp_url, queue) == 0
    assert recorder.seen() == Counter([*ids, sent_back])  # that one twice, the others once
    assert recorder.redelivered == [sent_back]
    first = next(i for i, batch in enumerate(recorder.batches) if sent_back in batch)
    assert len(recorder.batches[first]) > 1  # it was requeued from within a larger batch


def test_a_batch_handler_that_raises_requeues_its_batch_and_the_worker_keeps_consuming(
    amqp_url: str,
) -> None:
    queue = new_queue(amqp_url)
    ids = [f"m-{n:02d}-{uuid.uuid4().hex[:6]}" for n in range(10)]
    publish(amqp_url, queue, ids)
    raised: list[list[str]] = []
    recorder = Recorder()

    def handler(
        envelopes: Sequence[Envelope], *, stopping: Callable[[], bool]
    ) -> list[Disposition]:
        if not raised:
            raised.append([e.message_id or "" for e in envelopes])
            raise RuntimeError("a bug in the stage")
        return recorder(envelopes, stopping=stopping)

    with batch_worker(amqp_url, queue, handler, size=10, prefetch=10) as (_, thread):
        wait_until(lambda: set(recorder.seen()) >= set(ids), timeout=30, what="the batch again")
        late = f"late-{uuid.uuid4().hex[:6]}"
        publish(amqp_url, queue, [late])
        wait_until(lambda: late in recorder.seen(), timeout=30, what="a later message")
        assert thread.is_alive()

    assert raised and len(raised[0]) > 1  # it raised on a batch, not a single message
    assert set(recorder.redelivered) == set(raised[0])  # what it raised on came back
    assert recorder.seen() == Counter([*ids, late])
    assert depth(amqp_url, queue) == 0


def test_a_batch_acked_in_full_is_acked_with_one_frame_up_to_its_last_tag(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every message of a batch acked: one basic.ack with multiple=True for the batch's highest
    delivery tag (the channel holds nothing unsettled but the batch), and still every message
    acked exactly once, as the depth after release shows."""
    import amqp

    acks: list[tuple[int, bool]] = []
    real_ack = amqp.Channel.basic_ack

    def counting_ack(self: amqp.Channel, delivery_tag: int, multiple: bool = False) -> None:
        acks.append((delivery_tag, multiple))
        real_ack(self, delivery_tag, multiple=multiple)

    monkeypatch.setattr(amqp.Channel, "basic_ack", counting_ack)
    queue = new_queue(amqp_url)
    ids = [f"m-{n:03d}-{uuid.uuid4().hex[:6]}" for n in range(100)]
    publish(amqp_url, queue, ids)
    recorder = Recorder()

    with batch_worker(amqp_url, queue, recorder, size=25, prefetch=50):
        wait_until(lambda: sum(recorder.seen().values()) >= 100, timeout=30, what="100 handled")
        wait_until(lambda: len(acks) >= len(recorder.batches), timeout=10, what="the acks")
        time.sleep(0.3)

    assert depth(amqp_url, queue) == 0  # released with nothing unacked: every one was acked
    assert recorder.seen() == Counter(ids)
    assert len(acks) == len(recorder.batches) < 100  # one frame a batch
    assert all(multiple for _, multiple in acks)
    tags = [tag for tag, _ in acks]
    assert tags == sorted(tags) and tags[-1] == 100  # each up to its batch's last message
