// Networks and their endpoints as the engine keeps them, in the shared metadata database:
// engine_networks holds each network's Docker view (what `network inspect` shows, minus
// the live Containers map), engine_endpoints one row per (network, container) link — made
// when a container is created on or connected to the network, filled with its address
// once CNI has attached it, removed on disconnect or container removal.
import { join } from "node:path";
import { cachedStatement, openDatabase, transaction, type Database } from "../../../core/sqlite.ts";
import type { PortMapping } from "../../../core/cni/conflist.ts";
import { conflict } from "../http.ts";

export interface IpamConfig {
  Subnet: string;
  Gateway: string;
}

export interface NetworkRecord {
  Name: string;
  Id: string;
  Created: string;
  Scope: "local";
  Driver: "bridge" | "host" | "null";
  EnableIPv6: boolean;
  IPAM: { Driver: string; Options: Record<string, string> | null; Config: IpamConfig[] };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

export interface Endpoint {
  NetworkID: string;
  ContainerID: string;
  EndpointID: string;
  /** The container's name without its slash (what peers resolve). */
  Name: string;
  Aliases: string[];
  /** eth0, eth1, … in the order the container joined. */
  IfName: string;
  /** Empty until attached. */
  IPAddress: string;
  IPPrefixLen: number;
  Gateway: string;
  MacAddress: string;
  /** The container's /etc/hosts on the host, rewritten when peers come and go. */
  HostsPath: string;
  /** Published ports (on the container's first network only). */
  Ports?: PortMapping[];
  /** The container's own name for itself, and its --add-host entries ("name:address"): its /etc/hosts lists them. */
  Hostname?: string;
  ExtraHosts?: string[];
}

/** The bridge device of a bridge network (kept in its options, as Docker shows for docker0). */
export const bridgeNameOption = "com.docker.network.bridge.name";

const schema = `
CREATE TABLE IF NOT EXISTS engine_networks (
  id      TEXT PRIMARY KEY,
  name    TEXT NOT NULL UNIQUE,
  created TEXT NOT NULL,
  record  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS engine_endpoints (
  network   TEXT NOT NULL,
  container TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  record    TEXT NOT NULL,
  PRIMARY KEY (network, container)
);
CREATE INDEX IF NOT EXISTS engine_endpoints_container ON engine_endpoints (container);
`;

export class NetworkStore {
  private readonly db: Database;

  constructor(root: string) {
    this.db = openDatabase(join(root, "metadata.db"), schema);
  }

  close(): void {
    this.db.close();
  }

  insert(record: NetworkRecord): void {
    transaction(this.db, () => {
      if (cachedStatement(this.db, "SELECT 1 FROM engine_networks WHERE name = ?").get(record.Name)) throw conflict(`network with name ${record.Name} already exists`);
      cachedStatement(this.db, "INSERT INTO engine_networks (id, name, created, record) VALUES (?, ?, ?, ?)").run(record.Id, record.Name, record.Created, JSON.stringify(record));
    });
  }

  update(record: NetworkRecord): void {
    cachedStatement(this.db, "UPDATE engine_networks SET record = ? WHERE id = ?").run(JSON.stringify(record), record.Id);
  }

  /** Deletes the network and its endpoint rows. */
  delete(id: string): void {
    transaction(this.db, () => {
      cachedStatement(this.db, "DELETE FROM engine_endpoints WHERE network = ?").run(id);
      cachedStatement(this.db, "DELETE FROM engine_networks WHERE id = ?").run(id);
    });
  }

  list(): NetworkRecord[] {
    const rows = cachedStatement(this.db, "SELECT record FROM engine_networks ORDER BY created").all() as { record: string }[];
    return rows.map((row) => JSON.parse(row.record) as NetworkRecord);
  }

  byName(name: string): NetworkRecord | undefined {
    const row = cachedStatement(this.db, "SELECT record FROM engine_networks WHERE name = ?").get(name) as { record: string } | undefined;
    return row ? (JSON.parse(row.record) as NetworkRecord) : undefined;
  }

  /** Docker's lookup order: full id, exact name, then a unique id prefix. */
  resolve(ref: string): NetworkRecord | undefined {
    if (!ref) return undefined;
    const byId = cachedStatement(this.db, "SELECT record FROM engine_networks WHERE id = ?").get(ref) as { record: string } | undefined;
    if (byId) return JSON.parse(byId.record) as NetworkRecord;
    const byName = this.byName(ref);
    if (byName) return byName;
    if (!/^[0-9a-f]+$/.test(ref)) return undefined;
    const byPrefix = cachedStatement(this.db, "SELECT record FROM engine_networks WHERE id >= ? AND id < ? LIMIT 2").all(ref, `${ref}g`) as { record: string }[];
    return byPrefix.length === 1 ? (JSON.parse(byPrefix[0]!.record) as NetworkRecord) : undefined;
  }

  /** Adds or replaces a container's endpoint on a network (its position among the container's networks is kept). */
  putEndpoint(endpoint: Endpoint): void {
    transaction(this.db, () => {
      const existing = cachedStatement(this.db, "SELECT seq FROM engine_endpoints WHERE network = ? AND container = ?").get(endpoint.NetworkID, endpoint.ContainerID) as { seq: number } | undefined;
      const seq = existing?.seq ?? ((cachedStatement(this.db, "SELECT MAX(seq) AS m FROM engine_endpoints WHERE container = ?").get(endpoint.ContainerID) as { m: number | null }).m ?? -1) + 1;
      cachedStatement(this.db, "INSERT OR REPLACE INTO engine_endpoints (network, container, seq, record) VALUES (?, ?, ?, ?)").run(endpoint.NetworkID, endpoint.ContainerID, seq, JSON.stringify(endpoint));
    });
  }

  deleteEndpoint(network: string, container: string): void {
    cachedStatement(this.db, "DELETE FROM engine_endpoints WHERE network = ? AND container = ?").run(network, container);
  }

  endpoint(network: string, container: string): Endpoint | undefined {
    const row = cachedStatement(this.db, "SELECT record FROM engine_endpoints WHERE network = ? AND container = ?").get(network, container) as { record: string } | undefined;
    return row ? (JSON.parse(row.record) as Endpoint) : undefined;
  }

  /** A container's endpoints in the order it joined the networks. */
  endpointsOfContainer(container: string): Endpoint[] {
    const rows = cachedStatement(this.db, "SELECT record FROM engine_endpoints WHERE container = ? ORDER BY seq").all(container) as { record: string }[];
    return rows.map((row) => JSON.parse(row.record) as Endpoint);
  }

  /** Every endpoint by container, each container's in its order: one query for a whole list. */
  endpointsByContainer(): Map<string, Endpoint[]> {
    const rows = cachedStatement(this.db, "SELECT container, record FROM engine_endpoints ORDER BY container, seq").all() as { container: string; record: string }[];
    const byContainer = new Map<string, Endpoint[]>();
    for (const row of rows) {
      let list = byContainer.get(row.container);
      if (!list) byContainer.set(row.container, (list = []));
      list.push(JSON.parse(row.record) as Endpoint);
    }
    return byContainer;
  }

  endpointsOfNetwork(network: string): Endpoint[] {
    const rows = cachedStatement(this.db, "SELECT record FROM engine_endpoints WHERE network = ? ORDER BY seq, container").all(network) as { record: string }[];
    return rows.map((row) => JSON.parse(row.record) as Endpoint);
  }
}
