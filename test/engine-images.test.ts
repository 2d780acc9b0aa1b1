// The Engine API's images endpoints driven by the real docker CLI: load, images, inspect,
// history, tag, rmi (untag vs delete, 404, the 409 of an image a container uses), save
// piped back into load, image prune, and push/pull against a real docker-registry on
// loopback.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, run, startDaemon, tableRows, type Daemon } from "./harness.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";
import { engineHttpText } from "./fixtures/engine-session.ts";
import { buildBusyboxImage } from "./fixtures/busybox-image.ts";
import { blobOf, descriptor, imageFromLayers, layoutEntries, ociManifestType, skopeo, skopeoArchives, tarOf, twoPlatformIndex } from "./fixtures/archives.ts";
import { TestRegistry } from "./fixtures/registry.ts";
import { EngineStore, initialState, type ContainerRecord } from "../services/engine/store.ts";

let d: Daemon;
let workdir: string;
let busyboxArchive: string;
let otherArchive: string;
let busyboxId: string;
let registry: TestRegistry | undefined;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "berth-engine-images-"));
  const busybox = await buildBusyboxImage();
  busyboxId = busybox.config.digest;
  busyboxArchive = skopeoArchives(join(workdir, "bb"), busybox).dockerArchive;
  // A second image over the same layer (its config differs, so its ID does).
  const other = imageFromLayers(busybox.layers, JSON.parse(busybox.config.data.toString()).rootfs.diff_ids);
  otherArchive = skopeoArchives(join(workdir, "other"), other, "other:1").dockerArchive;
  d = await startDaemon();
});

after(async () => {
  if (d) await removeEveryContainer(d);
  await registry?.stop();
  await d?.destroy();
  rmSync(workdir, { recursive: true, force: true });
});

const http = (method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) => engineHttpText(d, method, path, body, headers);

const imagesJson = async () => JSON.parse((await http("GET", "/images/json")).body) as { Id: string; RepoTags: string[]; RepoDigests: string[]; Size: number; Created: number }[];

test("docker load names the image the Docker way and docker images lists it", async () => {
  const r = ok(d.docker(["load", "-i", busyboxArchive]), "docker load");
  assert.match(r.stdout, /Loaded image: busybox:latest/);
  const rows = tableRows(ok(d.docker(["images"]), "docker images").stdout);
  const row = rows.find((cols) => cols[0] === "busybox");
  assert.ok(row, `busybox listed: ${JSON.stringify(rows)}`);
  assert.equal(row[1], "latest");
  assert.equal(row[2], busyboxId.slice("sha256:".length, "sha256:".length + 12));
  const list = await imagesJson();
  const item = list.find((i) => i.Id === busyboxId)!;
  assert.deepEqual(item.RepoTags, ["busybox:latest"]);
  assert.equal(item.Created, Date.parse("2026-01-01T00:00:00Z") / 1000);
  assert.ok(item.Size > 500_000, `size ${item.Size}`);
});

test("docker image inspect shows Docker's keys; the name, the ID and an ID prefix all find it", async () => {
  const [byName] = JSON.parse(ok(d.docker(["image", "inspect", "busybox"]), "inspect").stdout);
  assert.equal(byName.Id, busyboxId);
  assert.deepEqual(byName.RepoTags, ["busybox:latest"]);
  assert.equal(byName.Os, "linux");
  assert.equal(byName.Architecture, "amd64");
  assert.equal(byName.Created, "2026-01-01T00:00:00.000Z");
  assert.deepEqual(byName.Config.Cmd, ["sh"]);
  assert.equal(byName.RootFS.Type, "layers");
  assert.equal(byName.RootFS.Layers.length, 1);
  const [byId] = JSON.parse(ok(d.docker(["image", "inspect", busyboxId]), "inspect by id").stdout);
  assert.equal(byId.Id, busyboxId);
  const prefix = busyboxId.slice(7, 15);
  const [byPrefix] = JSON.parse(ok(d.docker(["image", "inspect", prefix]), "inspect by prefix").stdout);
  assert.equal(byPrefix.Id, busyboxId);
  const full = await http("GET", "/v1.41/images/docker.io/library/busybox:latest/json");
  assert.equal(full.status, 200);
});

test("a missing image is Docker's 404 and an invalid reference a 400", async () => {
  const missing = await http("GET", "/images/nope/json");
  assert.equal(missing.status, 404);
  assert.equal(missing.headers["content-type"], "application/json");
  assert.equal(JSON.parse(missing.body).message, "No such image: nope:latest");
  const bad = await http("GET", "/images/Bad/json");
  assert.equal(bad.status, 400);
  assert.equal(JSON.parse(bad.body).message, "invalid reference format: repository name must be lowercase");
  const r = d.docker(["rmi", "nope"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /No such image: nope:latest/);
  const badTag = await http("POST", "/images/busybox/tag?repo=x&tag=bad%20tag");
  assert.equal(badTag.status, 400);
  const noRepo = await http("POST", "/images/busybox/tag");
  assert.equal(noRepo.status, 400);
});

test("docker history shows the config's history, newest first", () => {
  const r = ok(d.docker(["history", "--no-trunc", "busybox"]), "history");
  assert.match(r.stdout, /berth test fixture: busybox-static/);
  assert.ok(r.stdout.includes(busyboxId), r.stdout);
});

test("docker tag adds a name; rmi of one of two tags only untags; rmi of the last deletes", async () => {
  ok(d.docker(["tag", "busybox", "bb:1"]), "tag");
  ok(d.docker(["tag", "busybox:latest", "127.0.0.1:5000/x/bb:2"]), "tag with registry");
  let item = (await imagesJson()).find((i) => i.Id === busyboxId)!;
  assert.deepEqual(item.RepoTags, ["127.0.0.1:5000/x/bb:2", "bb:1", "busybox:latest"]);
  let r = ok(d.docker(["rmi", "127.0.0.1:5000/x/bb:2"]), "rmi");
  assert.equal(r.stdout.trim(), "Untagged: 127.0.0.1:5000/x/bb:2");
  const byId = await http("DELETE", `/images/${busyboxId.slice(7, 19)}`);
  assert.equal(byId.status, 409, byId.body);
  assert.match(JSON.parse(byId.body).message, /must be forced\) - image is referenced in multiple repositories/);
  r = ok(d.docker(["rmi", "bb:1"]), "rmi bb:1");
  assert.equal(r.stdout.trim(), "Untagged: bb:1");
  r = ok(d.docker(["rmi", "busybox"]), "rmi busybox");
  assert.deepEqual(r.stdout.trim().split("\n"), ["Untagged: busybox:latest", `Deleted: ${busyboxId}`]);
  assert.equal((await imagesJson()).length, 0);
  ok(d.docker(["load", "-i", busyboxArchive]), "load again");
});

test("docker save piped into docker load gives the same image back", async () => {
  const saved = join(workdir, "saved.tar");
  ok(d.docker(["save", "-o", saved, "busybox"]), "save");
  ok(d.docker(["rmi", "busybox"]), "rmi");
  const env = { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config") };
  const loaded = ok(run("sh", ["-c", `docker load < ${saved}`], undefined, env), "load from stdin");
  assert.match(loaded.stdout, /Loaded image: busybox:latest/);
  // Straight through a pipe as well (the image is there already: the load names it again).
  const piped = ok(run("bash", ["-o", "pipefail", "-c", "docker save busybox:latest | docker load"], undefined, env), "save | load");
  assert.match(piped.stdout, /Loaded image: busybox:latest/);
  const item = (await imagesJson()).find((i) => i.Id === busyboxId);
  assert.deepEqual(item?.RepoTags, ["busybox:latest"]);
  const missing = d.docker(["save", "nope:1"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /No such image: nope:1/);
});

test("a bad archive is refused with a 400 and leaves no image", async () => {
  const before = (await imagesJson()).length;
  const r = await http("POST", "/images/load?quiet=1", Buffer.from("not a tar at all".repeat(64)), { "Content-Type": "application/x-tar" });
  assert.equal(r.status, 400, r.body);
  assert.ok(JSON.parse(r.body).message.length > 0);
  assert.equal((await imagesJson()).length, before);
});

test("a tag moved to another image leaves the old one dangling; image prune removes it", async () => {
  ok(d.docker(["load", "-i", otherArchive]), "load other");
  const otherId = (await imagesJson()).find((i) => i.RepoTags.includes("other:1"))!.Id;
  // Move busybox:latest to the other image: the busybox image keeps existing untagged.
  ok(d.docker(["tag", "other:1", "busybox:latest"]), "retag");
  const dangling = (await imagesJson()).find((i) => i.Id === busyboxId);
  assert.deepEqual(dangling?.RepoTags, []);
  const filtered = ok(d.docker(["images", "-q", "--filter", "dangling=true"]), "dangling filter").stdout.trim();
  assert.equal(filtered, busyboxId.slice(7, 19));
  const byRef = ok(d.docker(["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=oth*"]), "reference filter").stdout.trim();
  assert.equal(byRef, "other:1");
  const pruned = ok(d.docker(["image", "prune", "-f"]), "prune");
  assert.match(pruned.stdout, new RegExp(`deleted: ${busyboxId}`));
  assert.equal((await imagesJson()).find((i) => i.Id === busyboxId), undefined);
  // Back to the start: busybox:latest is busybox again, the other image gone.
  ok(d.docker(["load", "-i", busyboxArchive]), "load busybox");
  ok(d.docker(["rmi", "other:1"]), "rmi other:1");
  const rest = await imagesJson();
  assert.deepEqual(rest.map((i) => i.Id), [busyboxId]);
  assert.ok(rest.every((i) => i.Id !== otherId));
});

test("docker push to a loopback registry, rmi, then docker pull brings it back", async () => {
  registry = await TestRegistry.start(join(workdir, "registry"));
  const ref = `${registry.host}/bb:1`;
  ok(d.docker(["tag", "busybox", ref]), "tag");
  const pushed = ok(d.docker(["push", ref]), "push");
  assert.match(pushed.stdout, new RegExp(`The push refers to repository \\[${registry.host}/bb\\]`));
  const digestLine = /1: digest: (sha256:[a-f0-9]{64}) size: (\d+)/.exec(pushed.stdout);
  assert.ok(digestLine, pushed.stdout);
  assert.match(pushed.stdout, /Pushed/);
  let item = (await imagesJson()).find((i) => i.Id === busyboxId)!;
  assert.deepEqual(item.RepoDigests, [`${registry.host}/bb@${digestLine[1]}`]);

  const removed = ok(d.docker(["rmi", ref]), "rmi");
  assert.match(removed.stdout, new RegExp(`Untagged: ${registry.host}/bb:1`));
  ok(d.docker(["rmi", "busybox"]), "rmi busybox");
  assert.equal((await imagesJson()).length, 0);

  const pulled = ok(d.docker(["pull", ref]), "pull");
  assert.match(pulled.stdout, /1: Pulling from bb/);
  assert.match(pulled.stdout, /Pull complete/);
  assert.match(pulled.stdout, new RegExp(`Digest: ${digestLine[1]}`));
  assert.match(pulled.stdout, new RegExp(`Status: Downloaded newer image for ${registry.host}/bb:1`));
  item = (await imagesJson()).find((i) => i.Id === busyboxId)!;
  assert.deepEqual(item.RepoTags, [ref]);
  const again = ok(d.docker(["pull", ref]), "pull again");
  assert.match(again.stdout, new RegExp(`Status: Image is up to date for ${registry.host}/bb:1`));

  // The raw stream: Docker's JSON messages, one per line.
  const raw = await http("POST", `/images/create?fromImage=${encodeURIComponent(`${registry.host}/bb`)}&tag=1`, "", { "X-Registry-Auth": "e30=" });
  assert.equal(raw.status, 200);
  const messages = raw.body.trim().split("\r\n").map((line) => JSON.parse(line));
  assert.equal(messages[0].status, "Pulling from bb");
  assert.match(messages.at(-1).status, /^Status: Image is up to date/);
  // By digest: the name is pinned, the tag untouched.
  const byDigest = ok(d.docker(["pull", `${registry.host}/bb@${digestLine[1]}`]), "pull by digest");
  assert.match(byDigest.stdout, new RegExp(`Digest: ${digestLine[1]}`));
  ok(d.docker(["tag", ref, "busybox:latest"]), "tag busybox back");
});

test("docker run of an image that is only in the registry pulls it first", async () => {
  assert.ok(registry, "the registry runs");
  const ref = `${registry.host}/runme:1`;
  ok(d.docker(["tag", "busybox", ref]), "tag");
  ok(d.docker(["push", ref]), "push");
  ok(d.docker(["rmi", ref]), "rmi");
  const r = ok(d.docker(["run", "--rm", ref, "echo", "pulled-and-ran"]), "run");
  assert.match(r.stderr, new RegExp(`Unable to find image '${ref}' locally`));
  assert.equal(r.stdout.trim().split("\n").at(-1), "pulled-and-ran");
  ok(d.docker(["rmi", ref]), "rmi after run");
});

test("an index with only this host's content pushes as this host's manifest", async () => {
  assert.ok(registry, "the registry runs");
  const busybox = await buildBusyboxImage();
  const diffId = JSON.parse(busybox.config.data.toString()).rootfs.diff_ids[0];
  const amd64 = imageFromLayers(busybox.layers, [diffId], { architecture: "amd64" });
  const arm64 = imageFromLayers(busybox.layers, [diffId], { architecture: "arm64", variant: "v8" });
  const index = twoPlatformIndex(amd64.manifest, arm64.manifest);
  const ref = `${registry.host}/multi:1`;
  // The arm64 manifest and config are not in the archive, as after a pull of one platform.
  const archive = await tarOf(layoutEntries([index, ...amd64.blobs], [descriptor(index, { annotations: { "io.containerd.image.name": ref, "org.opencontainers.image.ref.name": "1" } })]));
  const loaded = ok(d.docker(["load"], archive), "load a one-platform index");
  assert.match(loaded.stdout, new RegExp(`Loaded image: ${ref}`));
  const pushed = ok(d.docker(["push", ref]), "push");
  assert.match(pushed.stdout, new RegExp(`1: digest: ${amd64.manifest.digest} size: ${amd64.manifest.size}`));
  ok(d.docker(["rmi", ref]), "rmi");
});

test("docker pull of a missing tag fails with Docker's 404 before any progress", async () => {
  assert.ok(registry, "the registry runs");
  const r = d.docker(["pull", `${registry.host}/bb:nope`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), `Error response from daemon: manifest for ${registry.host}/bb:nope not found: manifest unknown: manifest unknown`);
  const raw = await http("POST", `/images/create?fromImage=${encodeURIComponent(`${registry.host}/nothere`)}&tag=1`);
  assert.equal(raw.status, 404, raw.body);
  assert.equal(raw.headers["content-type"], "application/json");
  const push = d.docker(["push", `${registry.host}/notlocal:1`]);
  assert.equal(push.code, 1);
  assert.match(push.stderr, /An image does not exist locally with the tag: 127\.0\.0\.1:\d+\/notlocal/);
  const unreachable = d.docker(["pull", "127.0.0.1:1/bb:1"]);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /ECONNREFUSED/);
  // A push that fails after the 200: the error comes in the stream and the CLI exits 1.
  ok(d.docker(["tag", "busybox", "127.0.0.1:1/bb:1"]), "tag for an unreachable registry");
  const failedPush = d.docker(["push", "127.0.0.1:1/bb:1"]);
  assert.equal(failedPush.code, 1);
  assert.match(failedPush.stdout, /The push refers to repository \[127\.0\.0\.1:1\/bb\]/);
  assert.match(failedPush.stderr + failedPush.stdout, /ECONNREFUSED/);
  ok(d.docker(["rmi", "127.0.0.1:1/bb:1"]), "rmi");
});

test("rmi of an image a container uses is a 409; with force it is untagged and kept; prune keeps it", async () => {
  // A container record as the engine keeps one (the containers endpoints write the same table).
  const store = new EngineStore(d.root);
  const containerId = "c".repeat(64);
  const record: ContainerRecord = {
    Id: containerId,
    Name: "/uses-busybox",
    Created: new Date().toISOString(),
    Path: "sh",
    Args: [],
    Config: { Image: "busybox" },
    HostConfig: {},
    Image: busyboxId,
    State: initialState(),
    RestartCount: 0,
    LogPath: "",
  };
  // Only busybox:latest names the image (earlier tests left other tags).
  for (const tag of (await imagesJson()).find((i) => i.Id === busyboxId)!.RepoTags) if (tag !== "busybox:latest") ok(d.docker(["rmi", tag]), `rmi ${tag}`);
  store.insert(record);
  try {
    const refused = d.docker(["rmi", "busybox"]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      new RegExp(`conflict: unable to remove repository reference "busybox:latest" \\(must force\\) - container cccccccccccc is using its referenced image ${busyboxId.slice(7, 19)}`),
    );
    const byId = await http("DELETE", `/images/${busyboxId}`);
    assert.equal(byId.status, 409);
    assert.match(JSON.parse(byId.body).message, /image is being used by stopped container cccccccccccc/);
    const df = JSON.parse((await http("GET", "/system/df")).body);
    assert.equal(df.Images.find((i: { Id: string }) => i.Id === busyboxId).Containers, 1);

    const forced = ok(d.docker(["rmi", "-f", "busybox"]), "rmi -f");
    const lines = forced.stdout.trim().split("\n");
    assert.equal(lines[0], "Untagged: busybox:latest");
    // The digest names the pushes left go with the last tag.
    assert.ok(lines.length >= 2, forced.stdout);
    for (const line of lines.slice(1)) assert.match(line, /^Untagged: 127\.0\.0\.1:\d+\/(bb|runme)@sha256:/);
    const kept = (await imagesJson()).find((i) => i.Id === busyboxId);
    assert.deepEqual(kept?.RepoTags, []);
    ok(d.docker(["image", "prune", "-a", "-f"]), "prune -a");
    assert.ok((await imagesJson()).some((i) => i.Id === busyboxId), "a used image survives prune");
  } finally {
    store.delete(containerId);
    store.close();
  }
  const pruned = ok(d.docker(["image", "prune", "-f"]), "prune");
  assert.match(pruned.stdout, new RegExp(`deleted: ${busyboxId}`));
  ok(d.docker(["load", "-i", busyboxArchive]), "load busybox again");
});

test("an archive without names loads as an untagged image, reported by ID; save by ID loads back", async () => {
  const dir = join(workdir, "unnamed");
  mkdirSync(dir);
  const copy = skopeo(workdir, ["copy", `oci:${join(workdir, "other", "layout")}:v1`, `docker-archive:${join(dir, "unnamed.tar")}`]);
  assert.equal(copy.code, 0, copy.stderr);
  const loaded = ok(d.docker(["load", "-i", join(dir, "unnamed.tar")]), "load unnamed");
  const id = /Loaded image ID: (sha256:[a-f0-9]{64})/.exec(loaded.stdout)?.[1];
  assert.ok(id, loaded.stdout);
  const item = (await imagesJson()).find((i) => i.Id === id);
  assert.deepEqual(item?.RepoTags, []);
  const saved = join(dir, "by-id.tar");
  ok(d.docker(["save", "-o", saved, id.slice(7, 19)]), "save by ID");
  assert.deepEqual(ok(d.docker(["rmi", id]), "rmi by ID").stdout.trim().split("\n"), [`Deleted: ${id}`]);
  assert.match(ok(d.docker(["load", "-i", saved]), "load by-ID archive").stdout, new RegExp(`Loaded image ID: ${id}`));
  ok(d.docker(["rmi", id]), "rmi again");
});

test("list and prune filters: label, before/since, until", async () => {
  const busybox = await buildBusyboxImage();
  const diffId = JSON.parse(busybox.config.data.toString()).rootfs.diff_ids[0];
  // An older image with a label, over the busybox layer.
  const config = blobOf(
    "application/vnd.oci.image.config.v1+json",
    JSON.stringify({ architecture: "amd64", os: "linux", created: "2020-01-01T00:00:00Z", config: { Cmd: ["sh"], Labels: { tier: "test" } }, rootfs: { type: "layers", diff_ids: [diffId] } }),
  );
  const manifest = blobOf(
    ociManifestType,
    JSON.stringify({ schemaVersion: 2, mediaType: ociManifestType, config: { mediaType: config.mediaType, digest: config.digest, size: config.size }, layers: busybox.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })) }),
  );
  const archive = await tarOf(layoutEntries([manifest, config, ...busybox.layers], [descriptor(manifest, { annotations: { "io.containerd.image.name": "docker.io/library/labelled:old" } })]));
  ok(d.docker(["load"], archive), "load the labelled image");
  const list = (args: string[]) => ok(d.docker(["images", "--format", "{{.Repository}}:{{.Tag}}", ...args]), `images ${args.join(" ")}`).stdout.trim().split("\n").filter(Boolean).sort();
  assert.deepEqual(list(["--filter", "label=tier=test"]), ["labelled:old"]);
  assert.deepEqual(list(["--filter", "label=tier"]), ["labelled:old"]);
  assert.deepEqual(list(["--filter", "label=tier=prod"]), []);
  assert.deepEqual(list(["--filter", "before=busybox"]), ["labelled:old"]);
  assert.ok(!list(["--filter", "since=labelled:old"]).includes("labelled:old"));
  assert.ok(list(["--filter", "since=labelled:old"]).includes("busybox:latest"));
  const badFilter = await http("GET", `/images/json?filters=${encodeURIComponent(JSON.stringify({ colour: ["red"] }))}`);
  assert.equal(badFilter.status, 400);
  assert.equal(JSON.parse(badFilter.body).message, "Invalid filter 'colour'");
  // Prune everything unused created before 2021 with the label: only the labelled image goes.
  const pruned = ok(d.docker(["image", "prune", "-a", "-f", "--filter", "until=2021-01-01T00:00:00Z", "--filter", "label=tier=test"]), "prune with filters");
  assert.match(pruned.stdout, /untagged: labelled:old/);
  assert.match(pruned.stdout, new RegExp(`deleted: ${config.digest}`));
  assert.deepEqual(list(["--filter", "reference=labelled"]), []);
  assert.ok(list([]).includes("busybox:latest"));
});
