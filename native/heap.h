// How the process's C heap hands freed memory back to the system.
#pragma once

namespace qvl {
/**
 * Makes every C-heap allocation of 1 MiB or more a mapping of its own (glibc; elsewhere a no-op),
 * so that freeing it returns its pages at once. Idempotent.
 */
void unmap_large_frees();
}  // namespace qvl
