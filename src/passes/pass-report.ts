// What a rewriting pass reports per node: the nodes it rewrote (and into what) and those it left alone (and why). Pure.

/** One node of a pass's report, by its name (nodeLabel for unnamed ones) and op type. */
export interface PassReportEntry {
  node: string;
  opType: string;
}

/** Rewritten nodes with the form they took, and the nodes left as they were with the reason. */
export interface PassReport {
  quantized: (PassReportEntry & { form: string })[];
  skipped: (PassReportEntry & { reason: string })[];
}
