// The PORTS column as docker prints it: ports sorted (private port, address, public port,
// protocol); runs of consecutive ports that map to themselves (or are only exposed) are
// folded into ranges ("0.0.0.0:8000-8001->8000-8001/tcp", "80-81/tcp"); a port published
// under another number is listed on its own, after the ranges ("0.0.0.0:8080->80/tcp").

export interface PortEntry {
  IP?: string;
  PrivatePort: number;
  PublicPort?: number;
  Type: string;
}

function comparePorts(a: PortEntry, b: PortEntry): number {
  if (a.PrivatePort !== b.PrivatePort) return a.PrivatePort - b.PrivatePort;
  const ipA = a.IP ?? "";
  const ipB = b.IP ?? "";
  if (ipA !== ipB) return ipA < ipB ? -1 : 1;
  const pubA = a.PublicPort ?? 0;
  const pubB = b.PublicPort ?? 0;
  if (pubA !== pubB) return pubA - pubB;
  return a.Type < b.Type ? -1 : a.Type > b.Type ? 1 : 0;
}

/** host:port with an IPv6 address in brackets. */
const hostPort = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

interface Run {
  ip: string;
  type: string;
  first: number;
  last: number;
}

function runText(run: Run): string {
  const span = run.first === run.last ? String(run.first) : `${run.first}-${run.last}`;
  // Ranges keep the address as it is, brackets or not (docker writes ":::80->80/tcp").
  return run.ip ? `${run.ip}:${span}->${span}/${run.type}` : `${span}/${run.type}`;
}

export function displayPorts(ports: readonly PortEntry[] | null | undefined): string {
  const sorted = [...(ports ?? [])].sort(comparePorts);
  const open = new Map<string, Run>();
  const finished: string[] = [];
  const remapped: string[] = [];
  for (const port of sorted) {
    const ip = port.IP ?? "";
    if (ip && port.PublicPort !== port.PrivatePort) {
      remapped.push(`${hostPort(ip, port.PublicPort ?? 0)}->${port.PrivatePort}/${port.Type}`);
      continue;
    }
    const key = ip ? `${ip}/${port.Type}` : port.Type;
    const run = open.get(key);
    if (run && port.PrivatePort === run.last + 1) {
      run.last = port.PrivatePort;
      continue;
    }
    // A run broken by a gap is printed now; the key keeps its first-seen place for the last run.
    if (run) finished.push(runText(run));
    const next = { ip, type: port.Type, first: port.PrivatePort, last: port.PrivatePort };
    if (run) Object.assign(run, next);
    else open.set(key, next);
  }
  return [...finished, ...[...open.values()].map(runText), ...remapped].join(", ");
}
