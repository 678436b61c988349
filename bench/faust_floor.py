"""The floor under any Faust worker: a Faust agent that takes the detections in batches, as the
stream worker does, decodes each record with the same AvroSerde and does nothing else.

    .venv/bin/python bench/faust_floor.py TOPIC EXPECTED_RECORDS WEB_PORT

Started by bench_streams.py next to the bare consumer and the real worker. It prints one line,
`faust-floor` and JSON (`seconds`, `records`, `detections` between the first and the last record;
Faust routes it to its log on stderr), and exits. The app settings that cost per message are the
worker's (raw codecs, batch size, logging level, GC).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

import faust  # noqa: E402

from privaflow.schemas.codec import SchemaRegistry, bootstrap_servers, serde_for_topic
from privaflow.schemas.topics import DETECTIONS
from privaflow.streams.faust_compat import Worker, shorten_fetch_wait
from privaflow.streams.settings import WorkerSettings
from privaflow.streams.worker import tune_gc


def main() -> None:
    topic, expected, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    defaults = WorkerSettings.__dataclass_fields__
    batch_max, within = defaults["batch_max"].default, defaults["batch_within_s"].default
    shorten_fetch_wait()
    app = faust.App(f"privaflow-faust-floor-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap_servers()}",
                    store="memory://", key_serializer="raw", value_serializer="raw", web_port=port,
                    web_bind="127.0.0.1", consumer_auto_offset_reset="earliest",
                    datadir=f"/tmp/privaflow-faust-floor-{os.getpid()}")
    serde = serde_for_topic(SchemaRegistry(), DETECTIONS)
    # totals, and the totals when the first batch was done (the clock starts then, as for the worker)
    counts: dict[str, Any] = {"records": 0, "detections": 0, "start": None}

    @app.agent(app.topic(topic, key_serializer="raw", value_serializer="raw"))
    async def count(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_max, within=within):  # type: ignore[attr-defined]
            for e in events:
                m = e.message
                counts["detections"] += len(serde.decode(m.value, m.topic, m.partition, m.offset)["track_id"])
            counts["records"] += len(events)
            if counts["start"] is None:
                counts["start"] = (time.perf_counter(), counts["records"], counts["detections"])
            elif counts["records"] >= expected:
                t0, r0, d0 = counts["start"]
                got = {"seconds": time.perf_counter() - t0, "records": counts["records"] - r0,
                       "detections": counts["detections"] - d0}
                print("faust-floor " + json.dumps(got), flush=True)  # tagged: it lands among Faust's log lines
                os._exit(0)

    tune_gc()
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
