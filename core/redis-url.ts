// BERTH_REDIS_URL names the Redis that services use: a redis:// URL, or a UNIX
// socket as unix:///path or a bare absolute path (what berthd sets for its private one).
import type { RedisOptions } from "ioredis";

export function redisOptionsFromUrl(url: string): RedisOptions | string {
  if (url.startsWith("unix://")) return { path: url.slice("unix://".length) };
  if (url.startsWith("/")) return { path: url };
  return url;
}
