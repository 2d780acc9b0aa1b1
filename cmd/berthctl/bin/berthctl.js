#!/usr/bin/env node
import "../../../dist/berthctl.js";
