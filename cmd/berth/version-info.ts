// The client's own version facts, shown by `berth version` and `berth -v`.
export const clientVersion = "0.1.0";
export const clientApiVersion = "1.41";
