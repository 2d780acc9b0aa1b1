// IPv4 subnets as networks need them: parsing CIDRs the way Docker reports mistakes,
// overlap tests, the subnets already routed on this host, and the next free pool for a
// network created without a subnet.
import { execFileSync } from "node:child_process";
import { badRequest } from "../http.ts";

export interface Subnet {
  /** The network address as a 32-bit number. */
  base: number;
  prefix: number;
}

export function parseAddress(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    value = value * 256 + Number(part);
  }
  return value;
}

export function formatAddress(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join(".");
}

const maskOf = (prefix: number) => (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

/** "a.b.c.d/n" (host bits must be zero); Docker's wording for the mistakes. */
export function parseSubnet(text: string): Subnet {
  const slash = text.indexOf("/");
  const address = slash > 0 ? parseAddress(text.slice(0, slash)) : undefined;
  const prefixText = slash > 0 ? text.slice(slash + 1) : "";
  const prefix = /^\d{1,2}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (address === undefined || !(prefix >= 0 && prefix <= 32)) {
    if (text.includes(":")) throw badRequest(`IPv6 subnets are not supported: ${text}`);
    throw badRequest(`invalid CIDR address: ${text}`);
  }
  const base = (address & maskOf(prefix)) >>> 0;
  if (base !== address) throw badRequest(`invalid subnet ${text} : it should be ${formatAddress(base)}/${prefix}`);
  // a network address, a gateway, a broadcast address and at least one container
  if (prefix > 29) throw badRequest(`invalid subnet ${text}: a /${prefix} leaves no room for containers`);
  return { base, prefix };
}

export const formatSubnet = (s: Subnet) => `${formatAddress(s.base)}/${s.prefix}`;

export function contains(s: Subnet, address: number): boolean {
  return ((address & maskOf(s.prefix)) >>> 0) === s.base;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const prefix = Math.min(a.prefix, b.prefix);
  return ((a.base & maskOf(prefix)) >>> 0) === ((b.base & maskOf(prefix)) >>> 0);
}

/** The first usable address: Docker's default gateway. */
export const firstHost = (s: Subnet) => formatAddress(s.base + 1);

/** Subnets routed on this host (interfaces' networks and routes), except through the devices in `ignore`. */
export function hostSubnets(ignore: readonly string[] = []): Subnet[] {
  const out = execFileSync("ip", ["-4", "-o", "route", "show", "table", "all"], { encoding: "utf8" });
  const subnets: Subnet[] = [];
  for (const line of out.split("\n")) {
    const words = line.trim().split(/\s+/);
    const destination = words[0] === "local" || words[0] === "broadcast" || words[0] === "unicast" ? words[1] : words[0];
    if (!destination || destination === "default" || words[0] === "local" || words[0] === "broadcast") continue;
    const device = words[words.indexOf("dev") + 1];
    if (words.includes("dev") && device && ignore.includes(device)) continue;
    const [address, prefix = "32"] = destination.split("/");
    const base = parseAddress(address!);
    if (base === undefined) continue;
    subnets.push({ base: (base & maskOf(Number(prefix))) >>> 0, prefix: Number(prefix) });
  }
  return subnets;
}

/** Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s. */
function* defaultPools(): Generator<Subnet> {
  for (let second = 17; second <= 31; second++) yield { base: parseAddress(`172.${second}.0.0`)!, prefix: 16 };
  for (let third = 0; third < 256; third += 16) yield { base: parseAddress(`192.168.${third}.0`)!, prefix: 20 };
}

/** The first default pool overlapping none of `taken`. */
export function freePool(taken: readonly Subnet[]): Subnet | undefined {
  for (const pool of defaultPools()) {
    if (!taken.some((t) => overlaps(t, pool))) return pool;
  }
  return undefined;
}
