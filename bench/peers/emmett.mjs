// Emmett's PostgreSQL event store (npm @event-driven-io/emmett-postgresql 0.42) appending the
// benchmark's events: CLIENTS concurrent writers, each `appendToStream` call carrying BATCH
// events (Emmett appends many events per call to one stream, so each batch is one stream;
// one stream per mention would be one event per call, far slower). Prints one JSON line.
//
//   node emmett.mjs URL EVENTS_JSONL CLIENTS BATCH
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { getPostgreSQLEventStore } from '@event-driven-io/emmett-postgresql';

const [url, file, clients, batch] = process.argv.slice(2);
const events = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
const store = getPostgreSQLEventStore(url, { connectionOptions: { pooled: true } });
await store.schema.migrate();

const batches = [];
for (let i = 0; i < events.length; i += Number(batch)) {
  batches.push(events.slice(i, i + Number(batch)));
}
const started = performance.now();
await Promise.all(
  Array.from({ length: Number(clients) }, async (_, client) => {
    for (let b = client; b < batches.length; b += Number(clients)) {
      await store.appendToStream(
        `mention-batch-${randomUUID()}`,
        batches[b].map((e) => ({ type: e.type, data: e.data })),
      );
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
await store.close();
console.log(JSON.stringify({ peer: 'Emmett 0.42 (appendToStream)', events: events.length, seconds }));
