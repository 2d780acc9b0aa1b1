// The engine's own container records (names, config, state, restart counts): what
// `docker inspect` shows, kept in the shared metadata database's engine_containers table
// so they survive any crash. The containerd-level container (spec, snapshot) and its task
// live in the containers and tasks services, under the engine's namespace; this record is
// the Docker view of them. Names are unique by the table's constraint, so two creates
// racing for one name cannot both win.
import { join } from "node:path";
import { cachedStatement, openDatabase, transaction, type Database } from "../../core/sqlite.ts";
import { conflict } from "./http.ts";

/** Docker's container Config (create's body minus HostConfig/NetworkingConfig), as the client sent it, image defaults filled in. */
export interface ContainerConfig {
  Hostname?: string;
  Domainname?: string;
  User?: string;
  AttachStdin?: boolean;
  AttachStdout?: boolean;
  AttachStderr?: boolean;
  ExposedPorts?: Record<string, object> | null;
  Tty?: boolean;
  OpenStdin?: boolean;
  StdinOnce?: boolean;
  Env?: string[] | null;
  Cmd?: string[] | null;
  Healthcheck?: unknown;
  Image?: string;
  Volumes?: Record<string, object> | null;
  WorkingDir?: string;
  Entrypoint?: string[] | null;
  NetworkDisabled?: boolean;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  StopTimeout?: number;
  [key: string]: unknown;
}

export interface RestartPolicy {
  Name?: "" | "no" | "always" | "unless-stopped" | "on-failure";
  MaximumRetryCount?: number;
}

export interface HostConfig {
  Binds?: string[] | null;
  NetworkMode?: string;
  RestartPolicy?: RestartPolicy;
  AutoRemove?: boolean;
  Memory?: number;
  MemorySwap?: number;
  NanoCpus?: number;
  CpuShares?: number;
  CpuQuota?: number;
  CpuPeriod?: number;
  PidsLimit?: number | null;
  ReadonlyRootfs?: boolean;
  Tmpfs?: Record<string, string> | null;
  Mounts?: { Type?: string; Source?: string; Target?: string; ReadOnly?: boolean }[] | null;
  Privileged?: boolean;
  CapAdd?: string[] | null;
  CapDrop?: string[] | null;
  LogConfig?: { Type?: string; Config?: Record<string, string> };
  [key: string]: unknown;
}

export interface ContainerState {
  Status: "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead";
  Running: boolean;
  Paused: boolean;
  Restarting: boolean;
  OOMKilled: boolean;
  Dead: boolean;
  Pid: number;
  ExitCode: number;
  Error: string;
  StartedAt: string;
  FinishedAt: string;
}

export interface ContainerRecord {
  Id: string;
  /** With the leading slash, as Docker stores it ("/web"). */
  Name: string;
  /** RFC 3339 with nanoseconds. */
  Created: string;
  Path: string;
  Args: string[];
  Config: ContainerConfig;
  HostConfig: HostConfig;
  NetworkingConfig?: unknown;
  /** The image ID (its config digest). */
  Image: string;
  State: ContainerState;
  RestartCount: number;
  LogPath: string;
  /** Set by `stop`/`kill` from a user, so unless-stopped and always leave it down (until the next start). */
  ManuallyStopped?: boolean;
}

export const zeroTime = "0001-01-01T00:00:00Z";

export function initialState(): ContainerState {
  return { Status: "created", Running: false, Paused: false, Restarting: false, OOMKilled: false, Dead: false, Pid: 0, ExitCode: 0, Error: "", StartedAt: zeroTime, FinishedAt: zeroTime };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

const schema = `
CREATE TABLE IF NOT EXISTS engine_containers (
  id      TEXT PRIMARY KEY,
  name    TEXT NOT NULL UNIQUE,
  created TEXT NOT NULL,
  record  TEXT NOT NULL
);
`;

export class EngineStore {
  private readonly db: Database;
  private readonly shared = new Map<string, { text: string; record: ContainerRecord }>();

  constructor(root: string) {
    this.db = openDatabase(join(root, "metadata.db"), schema);
  }

  /** Whether any container exists (berthd starts the engine at boot only then). */
  static hasContainers(root: string): boolean {
    const store = new EngineStore(root);
    try {
      return cachedStatement(store.db, "SELECT 1 FROM engine_containers LIMIT 1").get() !== undefined;
    } finally {
      store.close();
    }
  }

  close(): void {
    this.db.close();
  }

  /** Adds a record; a taken name is Docker's 409. */
  insert(record: ContainerRecord): void {
    transaction(this.db, () => {
      const owner = cachedStatement(this.db, "SELECT id FROM engine_containers WHERE name = ?").get(record.Name) as { id: string } | undefined;
      if (owner) {
        throw conflict(
          `Conflict. The container name "${record.Name}" is already in use by container "${owner.id}". You have to remove (or rename) that container to be able to reuse that name.`,
        );
      }
      cachedStatement(this.db, "INSERT INTO engine_containers (id, name, created, record) VALUES (?, ?, ?, ?)").run(record.Id, record.Name, record.Created, JSON.stringify(record));
    });
  }

  /** Writes a changed record (a rename included; a taken name is a 409). */
  update(record: ContainerRecord): void {
    transaction(this.db, () => {
      const owner = cachedStatement(this.db, "SELECT id FROM engine_containers WHERE name = ?").get(record.Name) as { id: string } | undefined;
      if (owner && owner.id !== record.Id) {
        throw conflict(`Conflict. The container name "${record.Name}" is already in use by container "${owner.id}". You have to remove (or rename) that container to be able to reuse that name.`);
      }
      cachedStatement(this.db, "UPDATE engine_containers SET name = ?, record = ? WHERE id = ?").run(record.Name, JSON.stringify(record), record.Id);
    });
  }

  delete(id: string): void {
    cachedStatement(this.db, "DELETE FROM engine_containers WHERE id = ?").run(id);
  }

  get(id: string): ContainerRecord | undefined {
    const row = cachedStatement(this.db, "SELECT record FROM engine_containers WHERE id = ?").get(id) as { record: string } | undefined;
    return row ? (JSON.parse(row.record) as ContainerRecord) : undefined;
  }

  /**
   * Newest first, frozen and shared between calls: a record is parsed again only when its
   * stored text changed. For readers that run often (GET /containers/json, where parsing
   * every record was the largest cost); anything that changes a record takes list() or get().
   */
  listShared(): readonly ContainerRecord[] {
    const rows = cachedStatement(this.db, "SELECT id, record FROM engine_containers ORDER BY created DESC").all() as { id: string; record: string }[];
    const records = rows.map((row) => {
      const known = this.shared.get(row.id);
      if (known && known.text === row.record) return known.record;
      const record = deepFreeze(JSON.parse(row.record) as ContainerRecord);
      this.shared.set(row.id, { text: row.record, record });
      return record;
    });
    if (this.shared.size > rows.length) {
      const present = new Set(rows.map((row) => row.id));
      for (const id of this.shared.keys()) if (!present.has(id)) this.shared.delete(id);
    }
    return records;
  }

  /** Newest first, as `docker ps` lists. */
  list(): ContainerRecord[] {
    const rows = cachedStatement(this.db, "SELECT record FROM engine_containers ORDER BY created DESC").all() as { record: string }[];
    return rows.map((row) => JSON.parse(row.record) as ContainerRecord);
  }

  /**
   * A container by full id, exact name (with or without its slash), then unique id prefix,
   * as Docker resolves one; undefined when none or ambiguous.
   */
  resolve(ref: string): ContainerRecord | undefined {
    if (!ref || ref.includes("/", 1)) return undefined;
    const byId = this.get(ref);
    if (byId) return byId;
    const name = ref.startsWith("/") ? ref : `/${ref}`;
    const byName = cachedStatement(this.db, "SELECT record FROM engine_containers WHERE name = ?").get(name) as { record: string } | undefined;
    if (byName) return JSON.parse(byName.record) as ContainerRecord;
    if (!/^[0-9a-f]+$/.test(ref)) return undefined;
    const byPrefix = cachedStatement(this.db, "SELECT record FROM engine_containers WHERE id >= ? AND id < ? LIMIT 2").all(ref, `${ref}g`) as { record: string }[];
    return byPrefix.length === 1 ? (JSON.parse(byPrefix[0]!.record) as ContainerRecord) : undefined;
  }
}
