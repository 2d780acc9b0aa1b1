import { test } from "node:test";
import assert from "node:assert/strict";
import { fieldsAndLabels, parseFilters } from "./filters.ts";
import { BerthError } from "./errors.ts";

const item = fieldsAndLabels({ name: "docker.io/library/busybox:latest", digest: "sha256:ab" }, { "a.b": "1", env: "prod" });

test("no filters, or only empty strings, match everything", () => {
  assert.equal(parseFilters([])(item), true);
  assert.equal(parseFilters([""])(item), true);
});

test("operators: presence, ==, !=, ~=", () => {
  assert.equal(parseFilters(["labels.env"])(item), true);
  assert.equal(parseFilters(["labels.missing"])(item), false);
  assert.equal(parseFilters(["labels.env==prod"])(item), true);
  assert.equal(parseFilters(["labels.env==dev"])(item), false);
  assert.equal(parseFilters(["labels.env!=dev"])(item), true);
  assert.equal(parseFilters(["name~=busybox"])(item), true);
  assert.equal(parseFilters(["name~=^alpine"])(item), false);
});

test("quoted field names reach label keys with dots", () => {
  assert.equal(parseFilters(['labels."a.b"==1'])(item), true);
  assert.equal(parseFilters(['labels."a.b"==2'])(item), false);
});

test("comma is AND, several filters are OR", () => {
  assert.equal(parseFilters(["labels.env==prod,name~=alpine"])(item), false);
  assert.equal(parseFilters(["labels.env==prod,name~=busybox"])(item), true);
  assert.equal(parseFilters(["name~=alpine", "labels.env==prod"])(item), true);
});

test("syntax errors are InvalidArgument naming the filter", () => {
  for (const bad of ["==x", "labels.env==", 'labels."unterminated', "name~=(", "a b"]) {
    assert.throws(
      () => parseFilters([bad]),
      (err: BerthError) => err.kind === "invalid argument" && err.message.includes("filter parse error"),
      bad,
    );
  }
});
