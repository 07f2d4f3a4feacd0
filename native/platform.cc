#include "platform.h"

#include "kernels.h"

#include <sched.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace qvl {

bool cpu_has_avx512() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512vnni() {
#if defined(__x86_64__)
  return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

bool cpu_is_amd_with_avx512() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_is("amd") && cpu_has_avx512();
#else
  return false;
#endif
}

bool cpu_splits_512bit_ops() {
#if defined(__x86_64__)
  if (!cpu_is_amd_with_avx512()) return false;
  // AMD's performance optimization identifiers (CPUID 8000_001A EAX): bit 3, FP512, is set where
  // the datapath is 512 bits wide (a 2-core Zen 5 EPYC read EAX = 0xA and ran AVX-512 FMAs at
  // twice the AVX2 rate). A hypervisor that hides the leaf leaves the Zen 4 assumption.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0x8000001A, &eax, &ebx, &ecx, &edx)) return true;
  return (eax & (1u << 3)) == 0;
#else
  return false;
#endif
}

namespace {
int g_int8_gemv_512 = -1;  // −1: from the CPU
}

bool int8_gemv_512() {
  const int v = __atomic_load_n(&g_int8_gemv_512, __ATOMIC_RELAXED);
  if (v >= 0) return v != 0;
  // measured on Zen 5 only: Intel's AVX-512 cores keep the 256-bit kernel until measured there
  static const bool fromCpu = cpu_has_avx512vnni() && cpu_is_amd_with_avx512() && !cpu_splits_512bit_ops();
  return fromCpu;
}

void set_int8_gemv_512(int on) { __atomic_store_n(&g_int8_gemv_512, on < 0 ? -1 : on != 0, __ATOMIC_RELAXED); }

bool cpu_has_avx2() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

int physical_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int allowed = 0;
  std::set<std::pair<int, int>> cores;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
      if (!CPU_ISSET(cpu, &set)) continue;
      allowed++;
      std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream c(base + "core_id"), p(base + "physical_package_id");
      int core = -1, pkg = -1;
      if (c >> core && p >> pkg) cores.insert({pkg, core});
      else cores.insert({-1, cpu});
    }
  }
  int n = cores.empty() ? int(std::thread::hardware_concurrency()) : int(cores.size());
  if (allowed > 0 && n > allowed) n = allowed;
  return n > 0 ? n : 1;
}

}  // namespace qvl
