// The engine's one VolumeStore, opened on first use and closed with the engine (kept
// here rather than on Backend so the volume code stays in its own files).
import type { Backend } from "../backend.ts";
import { VolumeStore } from "./store.ts";

const stores = new WeakMap<Backend, VolumeStore>();

export function volumeStore(backend: Backend): VolumeStore {
  let store = stores.get(backend);
  if (!store) {
    const opened = new VolumeStore(backend.options.root);
    stores.set(backend, opened);
    backend.onClose(() => opened.close());
    store = opened;
  }
  return store;
}
