{
  "variables": {
    "qvl_kernel_cflags": ["-O3", "-fPIC", "-ffp-contract=fast", "-fno-math-errno", "-Wno-unused-function", "-Wno-maybe-uninitialized"]
  },
  "targets": [
    {
      "target_name": "qvl_kernels_avx512",
      "type": "static_library",
      "sources": ["native/kernels_avx512.cc"],
      "cflags_cc": ["<@(qvl_kernel_cflags)", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mf16c"]
    },
    {
      "target_name": "qvl_kernels_avx512vnni",
      "type": "static_library",
      "sources": ["native/kernels_avx512vnni.cc"],
      "cflags_cc": ["<@(qvl_kernel_cflags)", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vnni", "-mfma", "-mf16c"]
    },
    {
      "target_name": "qvl_kernels_avx2",
      "type": "static_library",
      "sources": ["native/kernels_avx2.cc"],
      "cflags_cc": ["<@(qvl_kernel_cflags)", "-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "qvl_kernels_avx2vnni",
      "type": "static_library",
      "sources": ["native/kernels_avx2vnni.cc"],
      "cflags_cc": ["<@(qvl_kernel_cflags)", "-mavx2", "-mfma", "-mf16c", "-mavxvnni"]
    },
    {
      "target_name": "qvl_kernels_base",
      "type": "static_library",
      "sources": ["native/kernels_base.cc"],
      "cflags_cc": ["<@(qvl_kernel_cflags)"]
    },
    {
      "target_name": "qvl_quantize_avx2",
      "type": "static_library",
      "sources": ["native/quantize_avx2.cc"],
      "cflags_cc": ["-O3", "-fPIC", "-ffp-contract=off", "-Wno-psabi", "-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "qvl_quantize_base",
      "type": "static_library",
      "sources": ["native/quantize_base.cc"],
      "cflags_cc": ["-O3", "-fPIC", "-ffp-contract=off", "-Wno-psabi"]
    },
    {
      "target_name": "qvl_native",
      "sources": ["native/addon.cc", "native/threadpool.cc", "native/mmap.cc", "native/heap.cc", "native/platform.cc", "native/kernels_mixed.cc", "native/q4x8_pack.cc", "native/q8x8_pack.cc", "native/kv_write.cc"],
      "dependencies": [
        "qvl_kernels_avx512",
        "qvl_kernels_avx512vnni",
        "qvl_kernels_avx2",
        "qvl_kernels_avx2vnni",
        "qvl_kernels_base",
        "qvl_quantize_avx2",
        "qvl_quantize_base",
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "cflags_cc": ["-O3", "-fPIC"],
      "ldflags": ["-pthread"]
    }
  ]
}
