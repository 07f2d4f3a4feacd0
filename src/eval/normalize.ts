/**
 * Exact-match normalization for short answers: trim, collapse every run of whitespace to one
 * space, lower-case, and drop trailing periods ("Red." = "red" = " RED "). Nothing else is
 * forgiven: "3" ≠ "three", "The first image" ≠ "first image".
 */
export function normalizeAnswer(s: string): string {
  return s.trim().replace(/\s+/g, ' ').toLowerCase().replace(/[\s.]+$/, '');
}

export function answersMatch(answer: string, expected: string): boolean {
  return normalizeAnswer(answer) === normalizeAnswer(expected);
}
