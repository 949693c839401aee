// A second, independent consumer of the relay's topic: KafkaJS (pure JavaScript, no
// librdkafka) and avsc, both from .cache/npm (tools/lib/deps.sh, SKALD_NPM_KAFKA).
// test_kafka.py runs it against a topic it filled with a mixed load (so it shares that
// suite's broker); it reads the whole topic up to the high watermarks and checks:
//   - every value is the Confluent wire format (0x00, 4-byte big-endian schema id, Avro
//     binary) and decodes, with nothing left over, with the schema the id names in
//     `skaldctl schemas export`;
//   - every event of `skaldctl log dump --json` is in the topic exactly once (by
//     event_id; a copy is a failure unless --allow-duplicates, and then it must be
//     identical), nothing else is, and per key the versions come in order;
//   - every header equals the envelope field (and there is no other header), the key is
//     the stream, the schema id is the event's, the decoded payload equals the dump's.
// It then changes one payload byte and one header of a copy and checks that the same
// comparison reports each, so a checker that could not fail would fail here.
// Usage: node test_kafka_js.mjs --npm DIR --bootstrap HOST:PORT --topic T --data DIR
//        --skaldctl PATH [--allow-duplicates]
// Exit 0 when everything matched, 1 with the first differences otherwise.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { isDeepStrictEqual } from "node:util";
import path from "node:path";

const args = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === "--allow-duplicates") args.allowDuplicates = true;
  else if (a.startsWith("--")) args[a.slice(2)] = process.argv[++i];
}
for (const need of ["npm", "bootstrap", "topic", "data", "skaldctl"]) {
  if (!args[need]) {
    console.error(`test_kafka_js: --${need} is required`);
    process.exit(2);
  }
}
const require = createRequire(path.join(path.resolve(args.npm), "node_modules", "x.js"));
const { Kafka, logLevel } = require("kafkajs");
const avro = require("avsc");

function skaldctl(...argv) {
  const out = execFileSync(args.skaldctl, argv, { encoding: "utf8", maxBuffer: 1 << 30 });
  return out.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

// id -> {type name, avsc Type}, from what a consumer is given
function exportedSchemas() {
  const byId = new Map();
  for (const x of skaldctl("schemas", "export", "--data", args.data, "--topic", args.topic)) {
    if (x.subject !== `${args.topic}-skald.events.${x.type}`)
      throw new Error(`subject ${x.subject} is not the record-name strategy's`);
    if (x.body.schemaType !== "AVRO" || x.body.id !== x.id)
      throw new Error(`export body of ${x.subject} v${x.version} lacks its id`);
    byId.set(x.id, { name: x.type, type: avro.Type.forSchema(JSON.parse(x.body.schema)) });
  }
  return byId;
}

// Every message of the topic from offset 0 up to the high watermarks, bounded in time.
async function readTopic() {
  const kafka = new Kafka({
    clientId: "skald-test-js",
    brokers: args.bootstrap.split(","),
    logLevel: logLevel.WARN,
  });
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(args.topic);
  await admin.disconnect();
  const high = new Map(offsets.map((o) => [o.partition, Number(o.high)]));
  const next = new Map(offsets.map((o) => [o.partition, 0]));
  const done = () => [...high].every(([p, h]) => next.get(p) >= h);
  const msgs = [];
  if (done()) return msgs;
  const consumer = kafka.consumer({ groupId: `t-js-${process.pid}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: args.topic, fromBeginning: true });
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      const offset = Number(message.offset);
      if (offset >= high.get(partition)) return;
      msgs.push({ partition, offset, key: message.key.toString(), headers: message.headers,
                  value: message.value });
      next.set(partition, offset + 1);
      if (done()) finish();
    },
  });
  const timer = setTimeout(finish, 180000);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  if (!done())
    throw new Error(`timed out reading ${args.topic}: at ${[...next]} of ${[...high]}`);
  return msgs.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

function headerText(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers || {})) {
    if (Array.isArray(v)) throw new Error(`header ${k} appears ${v.length} times`);
    out[k] = v === null || v === undefined ? "" : v.toString("utf8");
  }
  return out;
}

// What the headers of an event must be, from its log dump line.
function expectedHeaders(ev) {
  const h = {
    event_id: ev.event_id,
    position: String(ev.position),
    stream_id: ev.stream_id,
    version: String(ev.version),
    type: ev.type,
    occurred_at: String(ev.occurred_at_us),
    command_id: ev.command_id || "",
    correlation_id: ev.correlation_id || "",
  };
  for (const [k, v] of Object.entries(ev.metadata || {})) h[`meta.${k}`] = v;
  return h;
}

// The differences between a message and the event it carries ([] when equal).
function compare(msg, ev, schemas) {
  const diffs = [];
  const hdr = headerText(msg.headers);
  if (!isDeepStrictEqual(hdr, expectedHeaders(ev)))
    diffs.push(`headers ${JSON.stringify(hdr)} != ${JSON.stringify(expectedHeaders(ev))}`);
  if (msg.key !== ev.stream_id) diffs.push(`key ${msg.key} != stream ${ev.stream_id}`);
  const v = msg.value;
  if (v.length < 5 || v[0] !== 0) return diffs.concat(["value is not the Confluent wire format"]);
  const id = v.readUInt32BE(1);
  if (id !== ev.schema_id) diffs.push(`schema id ${id} != ${ev.schema_id}`);
  const schema = schemas.get(id);
  if (!schema) return diffs.concat([`schema id ${id} is not in the export`]);
  if (schema.name !== ev.type) diffs.push(`schema ${schema.name} for a ${ev.type}`);
  let payload;
  try {
    payload = JSON.parse(JSON.stringify(schema.type.fromBuffer(v.subarray(5))));
  } catch (e) {
    return diffs.concat([`payload does not decode: ${e.message}`]);
  }
  if (!isDeepStrictEqual(payload, ev.payload))
    diffs.push(`payload ${JSON.stringify(payload)} != ${JSON.stringify(ev.payload)}`);
  return diffs;
}

async function main() {
  const schemas = exportedSchemas();
  const events = skaldctl("log", "dump", "--data", args.data, "--json");
  const msgs = await readTopic();
  const first = new Map(); // event_id -> message
  const lastVersion = new Map(); // key -> [partition, version]
  const errors = [];
  let dups = 0;
  for (const m of msgs) {
    const hdr = headerText(m.headers);
    const prior = first.get(hdr.event_id);
    if (prior) {
      dups++;
      if (!args.allowDuplicates) errors.push(`event ${hdr.event_id} published twice`);
      if (!prior.value.equals(m.value) || !isDeepStrictEqual(headerText(prior.headers), hdr))
        errors.push(`a copy of ${hdr.event_id} differs from the first`);
      continue;
    }
    first.set(hdr.event_id, m);
    const prev = lastVersion.get(m.key);
    const version = Number(hdr.version);
    if (prev && (prev[0] !== m.partition || version !== prev[1] + 1))
      errors.push(`stream ${m.key}: version ${version} after ${prev[1]} (partition ` +
                  `${m.partition} after ${prev[0]})`);
    lastVersion.set(m.key, [m.partition, version]);
  }
  for (const ev of events) {
    const m = first.get(ev.event_id);
    if (!m) {
      errors.push(`event ${ev.event_id} (position ${ev.position}) is not in the topic`);
      continue;
    }
    for (const d of compare(m, ev, schemas)) errors.push(`position ${ev.position}: ${d}`);
  }
  if (first.size !== events.length)
    errors.push(`${first.size} distinct events in the topic, ${events.length} in the log`);
  if (events.length === 0) errors.push("the log is empty: nothing was checked");

  // The comparison must see a changed payload byte and a changed header.
  if (events.length > 0) {
    const ev = events[events.length - 1];
    const m = first.get(ev.event_id);
    if (m) {
      const value = Buffer.from(m.value);
      value[value.length - 1] ^= 0x01;
      if (compare({ ...m, value }, ev, schemas).length === 0)
        errors.push("self-check: a changed payload byte went unnoticed");
      const headers = { ...m.headers, version: Buffer.from(String(ev.version + 1)) };
      if (compare({ ...m, headers }, ev, schemas).length === 0)
        errors.push("self-check: a changed header went unnoticed");
    }
  }
  const types = new Set(events.map((e) => e.type));
  console.log(`test_kafka_js: ${msgs.length} messages, ${first.size} events of ${types.size} ` +
              `types over ${lastVersion.size} streams, ${dups} copies, ${errors.length} errors`);
  if (errors.length) {
    for (const e of errors.slice(0, 20)) console.error(`test_kafka_js: ${e}`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(`test_kafka_js: ${e.stack || e}`);
  process.exit(1);
});
