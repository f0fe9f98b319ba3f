"""Peers of Plasma's event store, appending the benchmark's events into their own schema in the
same PostgreSQL: message-db 1.3 (its `write_message` function, batched in transactions) and the
Python `eventsourcing` 9.5 PostgreSQL recorder (`insert_events`, one transaction per batch).
CLIENTS threads, each with its own connection, send batches of BATCH events. Prints one JSON
line.

    python python_peers.py message-db|eventsourcing URL EVENTS_JSONL CLIENTS BATCH
"""

import json
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

import psycopg


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def batches(events, size):
    return [events[i : i + size] for i in range(0, len(events), size)]


def run_clients(work, clients, parts):
    errors = []

    def client(c):
        try:
            work([b for i, b in enumerate(parts) if i % clients == c])
        except Exception as e:  # noqa: BLE001 - reported below, fails the run
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def message_db(url, events, clients, batch):
    def work(mine):
        with psycopg.connect(url, options="-c search_path=message_store,public") as conn:
            for part in mine:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        "SELECT write_message(%s, %s, %s, %s::jsonb, NULL, NULL)",
                        [
                            (str(uuid.uuid4()), f"mention-{e['stream'].replace('-', '')}", e["type"], json.dumps(e["data"]))
                            for e in part
                        ],
                    )

    return run_clients(work, clients, batches(events, batch))


def eventsourcing(url, events, clients, batch):
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    u = urlparse(url)
    datastore = PostgresDatastore(
        dbname=u.path.lstrip("/"),
        host=u.hostname,
        port=str(u.port or 5432),
        user=u.username or "",
        password=u.password or "",
        pool_size=clients,
        max_overflow=0,
    )
    recorder = PostgresApplicationRecorder(datastore, events_table_name="stored_events")
    recorder.create_table()

    def work(mine):
        for part in mine:
            recorder.insert_events(
                [
                    StoredEvent(
                        originator_id=uuid.UUID(e["stream"]),
                        originator_version=1,
                        topic=f"plasma.mention:{e['type']}",
                        state=json.dumps(e["data"]).encode(),
                    )
                    for e in part
                ]
            )

    seconds = run_clients(work, clients, batches(events, batch))
    datastore.close()
    return seconds


def main():
    peer, url, path, clients, batch = sys.argv[1:6]
    events = load(path)
    run = {"message-db": message_db, "eventsourcing": eventsourcing}[peer]
    seconds = run(url, events, int(clients), int(batch))
    name = {
        "message-db": "message-db 1.3.1 (write_message, batched)",
        "eventsourcing": "eventsourcing 9.5.6 (PostgreSQL recorder)",
    }[peer]
    print(json.dumps({"peer": name, "events": len(events), "seconds": seconds}))


if __name__ == "__main__":
    main()
