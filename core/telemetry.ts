// OpenTelemetry: every process creates spans through @opentelemetry/api, which is a
// no-op until an SDK registers. The SDK and OTLP/HTTP exporter are loaded only when
// OTEL_EXPORTER_OTLP_ENDPOINT is set (they are kept out of the bundles).
import { context, propagation, trace, type Context, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";

let shutdownTelemetry: (() => Promise<void>) | undefined;

export function telemetryEnabled(): boolean {
  return Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

export async function initTelemetry(serviceName: string): Promise<void> {
  if (!telemetryEnabled() || shutdownTelemetry) return;
  const sdkModule = "@opentelemetry/sdk-trace-node";
  const exporterModule = "@opentelemetry/exporter-trace-otlp-http";
  const resourcesModule = "@opentelemetry/resources";
  const corePropagation = "@opentelemetry/core";
  const sdk = await import(sdkModule);
  const { OTLPTraceExporter } = await import(exporterModule);
  const { resourceFromAttributes } = await import(resourcesModule);
  const { W3CTraceContextPropagator } = await import(corePropagation);
  const provider = new sdk.NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName }),
    spanProcessors: [new sdk.BatchSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  shutdownTelemetry = () => provider.shutdown();
}

/** Flushes and stops the exporter; call before the process exits. */
export async function stopTelemetry(): Promise<void> {
  await shutdownTelemetry?.().catch(() => {});
}

export const tracer = () => trace.getTracer("berth");

type HeaderBag = { get(key: string): unknown; set(key: string, value: string): void };

const bagGetter: TextMapGetter<HeaderBag> = {
  keys: () => [],
  get: (bag, key) => {
    const value = bag.get(key);
    return typeof value === "string" ? value : undefined;
  },
};

const bagSetter: TextMapSetter<HeaderBag> = { set: (bag, key, value) => bag.set(key, value) };

/** The trace context carried in gRPC metadata (traceparent). */
export function extractContext(headers: HeaderBag): Context {
  return propagation.extract(context.active(), headers, bagGetter);
}

export function injectContext(headers: HeaderBag, ctx: Context = context.active()): void {
  propagation.inject(ctx, headers, bagSetter);
}
