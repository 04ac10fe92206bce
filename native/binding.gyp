{
  "targets": [
    {
      "target_name": "ctacct",
      "sources": ["binding.c", "ct_evthread.c", "ct_owners.c", "binding_owners.c", "ct_netns.c", "ct_parse.c", "ct_sock.c", "ct_nft.c", "binding_nft.c", "ct_bpf.c", "binding_bpf.c", "ct_json.c", "binding_json.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden", "-fstack-protector-strong", "-std=gnu11"],
      "cflags!": ["-O3"],
      "ldflags": ["-Wl,-z,relro,-z,now", "-pthread"]
    }
  ]
}
