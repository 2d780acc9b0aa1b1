// BERTH_REDIS_URL names the Redis that services use: a redis:// URL, or a UNIX
// socket as unix:///path or a bare absolute path (what berthd sets for its private one).
// BERTH_REDIS_PASSWORD, when set, is the password of berthd's private Redis (made at
// each start, given only to Berth's processes through their environment).
import type { RedisOptions } from "ioredis";

export function redisOptionsFromUrl(url: string, password = process.env.BERTH_REDIS_PASSWORD): RedisOptions | string {
  const auth = password ? { password } : {};
  if (url.startsWith("unix://")) return { path: url.slice("unix://".length), ...auth };
  if (url.startsWith("/")) return { path: url, ...auth };
  return url;
}
