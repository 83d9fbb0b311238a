"""Bounds on what scenario, topology and manifest files may hold or ask for.

Files come from strangers: every input is bounded before it can cost unbounded time,
memory or kernel objects. `kubemu check` (and `kubemu run`, before touching the kernel)
refuses anything beyond these limits with one line naming the limit. Documented in
docs/scenarios.md (Limits).
"""
from __future__ import annotations

# --- reading files (emulator/config/source.py) ---
MAX_FILE_BYTES = 1 << 20          # 1 MiB per scenario, topology or manifest file
MAX_YAML_DEPTH = 64               # nested mappings/sequences
MAX_YAML_NODES = 100_000          # YAML nodes per file, counting each alias as the nodes it repeats
MAX_TOTAL_BYTES = 4 << 20         # a scenario and every file it names, together
MAX_PARSE_SECONDS = 30.0          # reading a scenario and every file it names

# --- cluster size (topology) ---
MAX_NODES = 1000                  # nodes of a topology (all pools and zones; node hosts run them)
MAX_NODES_PER_ZONE = 1000         # a node pool's nodes_per_zone
MAX_CLIENTS = 100                 # client hosts

# --- workloads (manifests and scale steps) ---
MAX_REPLICAS = 1000               # a Deployment's replicas (manifest or scale step)
MAX_PODS = 5000                   # static Pods plus every Deployment's replicas
MAX_OBJECTS = 10_000              # Kubernetes objects of a scenario
MAX_STEPS = 1000                  # steps of a scenario

# --- traffic ---
MAX_REQUESTS = 10_000_000         # requests of one flow
MAX_CONCURRENCY = 1000            # requests in flight of one flow
MAX_RATE = 100_000.0              # requests started per second of one flow
MAX_PING_COUNT = 1_000_000        # echo requests of one ping flow
MAX_IPERF3_PARALLEL = 128         # iperf3 -P
MAX_DURATION_SECONDS = 86_400.0   # any duration (a day)
MAX_TARGET_CHARS = 2048           # a traffic target, host or URL

# --- the machine (estimates for the memory check) ---
NODE_MEMORY_MIB = 15              # one emulated node: kernel objects, its share of a node host, its shell
POD_MEMORY_MIB = 2                # one pod: namespace, veth, its share of the netexec server
HOST_MEMORY_MIB = 20              # one client host


def machine_memory_mib() -> int | None:
    """This machine's total memory in MiB (None when /proc/meminfo cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_estimate_mib(nodes: int, pods: int, hosts: int) -> int:
    """Rough memory a run needs: per node, per pod and per client host."""
    return nodes * NODE_MEMORY_MIB + pods * POD_MEMORY_MIB + hosts * HOST_MEMORY_MIB
