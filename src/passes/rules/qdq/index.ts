// The static-quantization (QDQ) rule table, merged from the per-family tables. Pure.

import { ACTIVATION_RULES } from './activation.js';
import { COMPUTE_RULES } from './compute.js';
import { ELEMENTWISE_RULES } from './elementwise.js';
import { LAYOUT_RULES } from './layout.js';
import { mergeRuleTables } from './types.js';

export type { OutputMode, QdqRule, QdqRuleTable, RuleContext, WeightSpec } from './types.js';
export { mergeRuleTables } from './types.js';
export { REGION_STOPS, SPEED_RULES, type SpeedContext, type SpeedDecision, type SpeedRule, type SpeedTarget } from './speed.js';

/** Every op type static quantization handles (default ONNX domain). */
export const QDQ_RULES = mergeRuleTables(COMPUTE_RULES, ELEMENTWISE_RULES, LAYOUT_RULES, ACTIVATION_RULES);
