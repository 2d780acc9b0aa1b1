// One trace spans the gateway and the service behind it: with an OTLP/HTTP endpoint
// configured, a ctr call produces a gateway span and a service span with the same
// trace id, the service span a child of the gateway's.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startDaemon, sleep, type Daemon } from "./harness.ts";

interface ReceivedSpan {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
}

let daemon: Daemon;
let collector: http.Server;
const spans: ReceivedSpan[] = [];

before(async () => {
  // A minimal OTLP/HTTP (JSON) trace receiver on loopback.
  collector = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      try {
        const payload = JSON.parse(body);
        for (const rs of payload.resourceSpans ?? []) {
          const service = rs.resource?.attributes?.find((a: { key: string }) => a.key === "service.name")?.value?.stringValue ?? "";
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) spans.push({ service, name: s.name, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? "" });
          }
        }
      } catch {
        // not JSON: ignored, the assertions below will say nothing arrived
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", () => r()));
  const { port } = collector.address() as AddressInfo;
  daemon = await startDaemon({
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: "50", OTEL_TRACES_SAMPLER: "always_on" },
  });
});

after(async () => {
  await daemon?.destroy();
  collector?.close();
});

test("a ctr call is one trace across the gateway (in berthd) and the content service process", async () => {
  const r = daemon.ctr(["content", "ls"]);
  assert.equal(r.code, 0, r.stderr);
  const method = "/containerd.services.content.v1.Content/List";
  let gateway: ReceivedSpan | undefined;
  let service: ReceivedSpan | undefined;
  for (let i = 0; i < 100 && !(gateway && service); i++) {
    await sleep(100);
    gateway = spans.find((s) => s.service === "berth-berthd" && s.name === `gateway ${method}`);
    service = spans.find((s) => s.service === "berth-content" && s.name === method);
  }
  assert.ok(gateway, `no gateway span arrived; got ${JSON.stringify(spans)}`);
  assert.ok(service, `no content span arrived; got ${JSON.stringify(spans)}`);
  assert.equal(service.traceId, gateway.traceId);
  assert.equal(service.parentSpanId, gateway.spanId);
});
