// ImageServices over grpc-js: clients on one socket (the gateway, for CLIs and scripts).
import { grpcClient } from "../grpc-client.ts";
import { imageServicesOn, type ImageServices } from "./services.ts";

export function connectImageServices(address: string, namespace: string, signal?: AbortSignal): ImageServices {
  return imageServicesOn((definition) => grpcClient(definition, address), namespace, signal);
}
