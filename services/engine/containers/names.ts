// Container names as Docker has them: stored with a leading slash, limited to a safe
// alphabet, and made up (adjective_surname) when the client gives none.
import { randomBytes, randomInt } from "node:crypto";
import { badRequest } from "../http.ts";

// Docker wants two characters at least; one-letter names (`--name x`) are accepted here too.
const validName = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** "/web" for "web" or "/web"; a name outside Docker's alphabet is a 400. */
export function canonicalName(name: string): string {
  if (!validName.test(name)) throw badRequest(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  return name.startsWith("/") ? name : `/${name}`;
}

// Our own word lists: moods and pioneers of computing and science.
const adjectives = [
  "amber", "brave", "calm", "clever", "curious", "daring", "eager", "fancy", "gentle", "happy", "jolly", "keen", "kind", "lively",
  "lucid", "merry", "modest", "nimble", "patient", "quiet", "rapid", "serene", "sharp", "steady", "sunny", "swift", "tender",
  "vivid", "wise", "witty", "zealous", "bold", "cheerful", "dreamy", "frosty", "humble",
];
const surnames = [
  "babbage", "backus", "bartik", "berners_lee", "boole", "cerf", "dijkstra", "engelbart", "feynman", "hamilton", "hopper",
  "kahn", "knuth", "lamport", "liskov", "lovelace", "mccarthy", "noether", "perlman", "ritchie", "shannon", "sutherland",
  "thompson", "torvalds", "turing", "wirth", "wozniak", "yonath", "curie", "meitner", "franklin", "goodall", "kepler",
  "euler", "gauss", "hypatia",
];

/** A made-up name; `taken` says whether one is in use (a few tries, then a random suffix makes it unique). */
export function generateName(taken: (name: string) => boolean): string {
  for (let attempt = 0; attempt < 10; attempt++) {
    const name = `/${adjectives[randomInt(adjectives.length)]}_${surnames[randomInt(surnames.length)]}`;
    if (!taken(name)) return name;
  }
  return `/${adjectives[randomInt(adjectives.length)]}_${surnames[randomInt(surnames.length)]}_${randomBytes(3).toString("hex")}`;
}

/** A new container id: 64 hex digits. */
export function newContainerId(): string {
  return randomBytes(32).toString("hex");
}
