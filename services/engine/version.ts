// API versions: the Engine API is served at 1.41 (what the reference captures were made
// against; Docker CLI 28 and 29 both accept it), down to 1.24 for older clients. A path's
// /v1.xx prefix picks the version a request is answered at; no prefix means ours.
import { badRequest } from "./http.ts";

export const apiVersion = "1.41";
export const minApiVersion = "1.24";

function parts(version: string): [number, number] {
  const [major, minor] = version.split(".").map(Number);
  return [major ?? 0, minor ?? 0];
}

/** a >= b for "major.minor" versions (numerically: 1.9 < 1.41). */
export function versionAtLeast(a: string, b: string): boolean {
  const [am, an] = parts(a);
  const [bm, bn] = parts(b);
  return am !== bm ? am > bm : an >= bn;
}

/** Splits "/v1.41/containers/json" into the version and the path; refuses versions we do not serve. */
export function splitVersion(path: string): { version: string; path: string } {
  const m = /^\/v(\d+\.\d+)(\/.*)?$/.exec(path);
  if (!m) return { version: apiVersion, path };
  const version = m[1]!;
  if (!versionAtLeast(apiVersion, version)) throw badRequest(`client version ${version} is too new. Maximum supported API version is ${apiVersion}`);
  if (!versionAtLeast(version, minApiVersion)) {
    throw badRequest(`client version ${version} is too old. Minimum supported API version is ${minApiVersion}, please upgrade your client to a newer version`);
  }
  return { version, path: m[2] ?? "/" };
}
