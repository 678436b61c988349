"""Starting a stream worker: the checks before Faust runs, then Faust.

In order: refuse to run if a partner schema could carry identifying data; create the topics that
are missing, the book of DP releases among them (retentions from the site config); register the
schemas; read the detections topic's partition count (state and ticks are co-partitioned with it);
run the Faust worker until it is stopped (SIGTERM/SIGINT) or crashes. Crash-only by design: a worker
killed at any point restarts from its table's changelog and replays without losing or double
counting (see streams.consume).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from privaflow.schemas.codec import SchemaRegistry
from privaflow.schemas.privacy import assert_partner_schemas_clean
from privaflow.schemas.topics import DAY_MS, Topic, ensure_topics, topics_for_site
from privaflow.streams.app import Dataflow, make_app, ticks_topic_name
from privaflow.streams.faust_compat import Worker
from privaflow.streams.settings import WorkerSettings

log = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    """The worker cannot start; the message says why and what to do."""


def worker_topics(settings: WorkerSettings, partitions: int | None = None) -> list[Topic]:
    """Every topic the worker reads or writes: the topic table (prefixed, site retentions) plus the
    tick topic, which is the worker's own (like Faust's changelog) and so not in schemas/topics.py."""
    topics = [dataclasses.replace(t, name=settings.topics.prefix + t.name) for t in topics_for_site(settings.site)]
    det = next(t for t in topics if t.name == settings.topics.detections)
    ticks = Topic(ticks_topic_name(settings), partitions or det.partitions, DAY_MS, "delete", None)
    return [*topics, ticks]


def partition_count(settings: WorkerSettings, topic: str, timeout: float = 30.0) -> int:
    """Partitions of a topic, waiting for a topic just created to show up in the metadata."""
    admin = AdminClient(settings.librdkafka())
    deadline = time.monotonic() + timeout
    while True:
        t = admin.list_topics(topic, timeout=timeout).topics.get(topic)
        if t is not None and t.error is None and t.partitions:
            return len(t.partitions)
        if time.monotonic() > deadline:
            raise WorkerError(f"topic {topic} not found on {settings.bootstrap}")
        time.sleep(0.2)  # metadata of a topic created a moment ago propagates asynchronously


def ensure_ticks_topic(settings: WorkerSettings, partitions: int) -> list[str]:
    """Create the tick topic with the detections' partition count and the configured replication
    factor (stack.topics.ensure_topics creates with replication 1, right for the local stack only)."""
    t = worker_topics(settings, partitions)[-1]
    admin = AdminClient(settings.librdkafka())
    if t.name in admin.list_topics(timeout=30).topics:
        return []
    future = admin.create_topics([NewTopic(t.name, t.partitions, settings.replication_factor, config=t.config())],
                                 operation_timeout=30)[t.name]
    try:
        future.result()
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):  # another worker starting at the same moment
            raise
        return []
    return [t.name]


def check_settings(settings: WorkerSettings) -> list[str]:
    """Warnings about settings that work but weaken a guarantee."""
    site = settings.site
    warnings = []
    hold_ms = site.counting.track_expiry_s * 1000 + 1000
    if site.windows.grace_s * 1000 < hold_ms:
        warnings.append(
            f"windows.grace_s ({site.windows.grace_s}) is shorter than counting.track_expiry_s + 1 s: an exit "
            "found when a track expires may be late for its window, and counts can then depend on batching "
            "(a replay after a crash could publish a window with a different value)")
    return warnings


def prepare(settings: WorkerSettings) -> Dataflow:
    """Everything before Faust runs (see the module docstring); returns the built app."""
    assert_partner_schemas_clean()
    from aiokafka.codec import has_lz4

    if not has_lz4():  # the edge producer compresses with lz4 (edge/publish.py); without it fetches fail
        raise WorkerError("cannot read lz4-compressed records: install aiokafka's lz4 extra "
                          "(pip install 'aiokafka[lz4]', which brings cramjam)")
    if settings.store == "rocksdb":
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            raise WorkerError("--store rocksdb needs the rocksdb extra: pip install 'privaflow[rocksdb]'") from None
    for w in check_settings(settings):
        log.warning(w)
    extra = dict(settings.kafka)
    created = ensure_topics(settings.bootstrap, worker_topics(settings)[:-1], extra=extra)
    partitions = partition_count(settings, settings.topics.detections)
    created += ensure_ticks_topic(settings, partitions)
    for name in created:
        log.info("created topic %s", name)
    ticks = partition_count(settings, ticks_topic_name(settings))
    if ticks != partitions:
        raise WorkerError(f"topic {ticks_topic_name(settings)} has {ticks} partitions but "
                          f"{settings.topics.detections} has {partitions}; they must match (delete the tick topic, "
                          "it holds nothing durable)")
    registry = SchemaRegistry(settings.registry_url)
    flow = make_app(settings, partitions, registry)
    flow.publisher.prepare()
    log.info("site %s: %d cameras, detections topic %s with %d partitions, app id %s", settings.site.site_id,
             len(settings.site.cameras), settings.topics.detections, partitions, settings.app_id)
    return flow


def run(settings: WorkerSettings, loglevel: str = "info") -> None:
    """Prepare, then run the Faust worker in this process until it stops."""
    flow = prepare(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tune_gc()
    Worker(flow.app, loglevel=loglevel, quiet=True, checkpoint=flow.loop.checkpoint_now).execute_from_commandline()


def tune_gc() -> None:
    """Collect cycles rarely. A batch allocates (and frees, by reference counting) hundreds of
    thousands of objects while the heap holds every camera's state, so with Python's default
    thresholds the cyclic collector ran ~100 times a second and a full pass stalled the loop for up to
    0.2 s: 2-3x the batch time and p99 latency in bench_streams. Objects of the start-up are frozen."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
