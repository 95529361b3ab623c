// Typed errors for every layer. Pure; anyone may import. The CLI alone maps them to exit codes.

/** Machine-readable error kinds; the CLI prints `message` and `hint`, never a stack. */
export type ErrorCode =
  | 'FILE_NOT_FOUND'
  | 'NOT_ONNX'
  | 'TRUNCATED'
  | 'UNSUPPORTED_OPSET'
  | 'UNSUPPORTED_MODEL'
  | 'EXTERNAL_DATA'
  | 'UNSAFE_PATH'
  | 'DATA_MISMATCH'
  | 'BAD_DATA'
  | 'BAD_OPTION'
  | 'SAME_INPUT_OUTPUT'
  | 'NON_FINITE'
  | 'RUNTIME'
  | 'INTERNAL';

/** An error a user can act on: what went wrong, and (in `hint`) what to do. */
export class LowbitError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  constructor(code: ErrorCode, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LowbitError';
    this.code = code;
    this.hint = hint;
  }
}

/** True for errors raised by lowbit itself (as opposed to bugs). */
export function isLowbitError(e: unknown): e is LowbitError {
  return e instanceof LowbitError;
}
