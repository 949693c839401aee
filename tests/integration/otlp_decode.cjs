// otlp_decode.cjs -- an OTLP/HTTP JSON decoder that owes nothing to Skald's encoder: it
// takes the message types from OpenTelemetry's own JavaScript exporter (protobufjs code
// generated from the opentelemetry-proto .proto files), checks each JSON body against
// them, and prints the spans as the protobuf decodes them.
//
// Usage: node otlp_decode.cjs NODE_MODULES_DIR BODY.json...
// Per the OTLP specification's JSON encoding: keys are the fields' lowerCamelCase names,
// traceId/spanId/parentSpanId are hex (not base64), enums are integers, 64-bit integers
// may be strings. Every key must be a field of its message; the object must pass the
// type's verify() (after the mapping's string forms are turned into bytes and Longs); it
// is then encoded to protobuf bytes and decoded again, and the decoded
// spans are printed as one JSON line (ids back in hex, times as decimal strings).
// Exit 1 with the reason on the first violation.
"use strict";
const fs = require("fs");
const path = require("path");

const modules = process.argv[2];
const $protobuf = require(path.join(modules, "protobufjs/minimal"));
const root = require(path.join(modules,
    "@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js"));
const v1 = root.opentelemetry.proto;
const Req = v1.collector.trace.v1.ExportTraceServiceRequest;

function fail(msg) {
    console.error("otlp_decode: " + msg);
    process.exit(1);
}

// The message type of each field that holds a message (the generated code has no
// reflection): enough of the schema to walk a trace export.
const T = {
    ExportTraceServiceRequest: [Req, {resourceSpans: "ResourceSpans"}],
    ResourceSpans: [v1.trace.v1.ResourceSpans, {resource: "Resource", scopeSpans: "ScopeSpans"}],
    Resource: [v1.resource.v1.Resource, {attributes: "KeyValue"}],
    ScopeSpans: [v1.trace.v1.ScopeSpans, {scope: "InstrumentationScope", spans: "Span"}],
    InstrumentationScope: [v1.common.v1.InstrumentationScope, {attributes: "KeyValue"}],
    Span: [v1.trace.v1.Span, {attributes: "KeyValue", links: "Link", status: "Status",
                              events: "Event"}],
    Link: [v1.trace.v1.Span.Link, {attributes: "KeyValue"}],
    Event: [v1.trace.v1.Span.Event, {attributes: "KeyValue"}],
    Status: [v1.trace.v1.Status, {}],
    KeyValue: [v1.common.v1.KeyValue, {value: "AnyValue"}],
    AnyValue: [v1.common.v1.AnyValue, {}],
};
const HEX_IDS = {traceId: 32, spanId: 16, parentSpanId: 16};
// 64-bit integers, which the proto3 JSON mapping writes as decimal strings (true: unsigned)
const INT64 = {intValue: false, startTimeUnixNano: true, endTimeUnixNano: true,
               timeUnixNano: true};

// Checks keys against the type and turns the hex ids into bytes, in place.
function check(obj, typeName, where) {
    const [ctor, children] = T[typeName];
    for (const key of Object.keys(obj)) {
        if (!(key in ctor.prototype))
            fail(`${where}: '${key}' is not a field of ${typeName}`);
        const child = children[key];
        if (child) {
            const items = Array.isArray(obj[key]) ? obj[key] : [obj[key]];
            items.forEach((it, i) => check(it, child, `${where}.${key}[${i}]`));
        } else if (key in HEX_IDS && (typeName === "Span" || typeName === "Link")) {
            const hex = obj[key];
            if (typeof hex !== "string" || !/^[0-9a-f]*$/.test(hex) ||
                (hex.length !== HEX_IDS[key] && !(key === "parentSpanId" && hex === "")))
                fail(`${where}.${key}: '${hex}' is not ${HEX_IDS[key]} hex digits`);
            obj[key] = Buffer.from(hex, "hex");
        } else if (key in INT64 && typeof obj[key] === "string") {
            if (!(INT64[key] ? /^[0-9]+$/ : /^-?[0-9]+$/).test(obj[key]))
                fail(`${where}.${key}: '${obj[key]}' is not a decimal integer`);
            obj[key] = $protobuf.util.Long.fromString(obj[key], INT64[key]);
        }
    }
    const err = ctor.verify(obj);
    if (err)
        fail(`${where}: ${typeName}.verify: ${err}`);
}

const spans = [];
for (const file of process.argv.slice(3)) {
    const body = JSON.parse(fs.readFileSync(file, "utf8"));
    check(body, "ExportTraceServiceRequest", path.basename(file));
    const bytes = Req.encode(Req.fromObject(body)).finish();
    const back = Req.toObject(Req.decode(bytes), {longs: String, bytes: String, defaults: true});
    for (const rs of back.resourceSpans) {
        const service = rs.resource.attributes.find(a => a.key === "service.name");
        for (const ss of rs.scopeSpans)
            for (const s of ss.spans) {
                const hex = b64 => Buffer.from(b64, "base64").toString("hex");
                const attrs = {};
                for (const a of s.attributes)
                    attrs[a.key] = a.value.stringValue !== undefined && a.value.stringValue !== ""
                        ? a.value.stringValue : a.value.intValue;
                spans.push({
                    service: service ? service.value.stringValue : null,
                    scope: ss.scope ? ss.scope.name : null,
                    traceId: hex(s.traceId), spanId: hex(s.spanId),
                    parentSpanId: hex(s.parentSpanId), name: s.name, kind: s.kind,
                    start: s.startTimeUnixNano, end: s.endTimeUnixNano, attributes: attrs,
                    links: s.links.map(l => ({traceId: hex(l.traceId), spanId: hex(l.spanId)})),
                    status: s.status ? s.status.code : 0,
                });
            }
    }
}
process.stdout.write(JSON.stringify(spans) + "\n");
