#!/usr/bin/env node
import "../../../dist/berthd.js";
